#!/usr/bin/env bash
# Remakes the step-mode pictures in assets/ from a real terminal: racelab in tmux at 100×32, on
# its own private redis-server. tui-step-naive-3.txt is naive after steps 1 2 1 (#2 about to
# write its stale copy), tui-step-naive.txt after 1 2 1 2, tui-step-watch.txt watch after the
# same schedule (#2's EXEC aborted, it reads again).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/racelab"
sock="racelab-step-pictures-$$"
trap 'tmux -L "$sock" kill-server 2>/dev/null || true; rm -f "${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)/$sock"' EXIT
screen() { tmux -L "$sock" capture-pane -p -t "$1"; }
wait_for() {
  for _ in $(seq 400); do
    screen "$1" | grep -q -- "$2" && return 0
    sleep 0.05
  done
  echo "the screen never showed '$2'" >&2
  exit 1
}
keys() { tmux -L "$sock" send-keys -t "$@"; }

# The presenter picks every step: p, then 1 Space 2 Space 1 Space 2 Space.
tmux -L "$sock" new-session -d -x 100 -y 32 -s naive "env -u REDIS_URL NO_COLOR=1 '$bin' -n 2 --seed 42"
wait_for naive "idle: press Enter"
keys naive p
wait_for naive "next: GET journey"
step=0
for u in 1 2 1; do
  step=$((step + 1))
  keys naive "$u" Space
  wait_for naive " $step #$u "
done
sleep 0.3
screen naive > assets/tui-step-naive-3.txt
keys naive 2 Space
wait_for naive "Repeat it"
sleep 0.3
screen naive > assets/tui-step-naive.txt
keys naive q

# A loaded schedule: Space takes its next step.
tmux -L "$sock" new-session -d -x 100 -y 32 -s watch "env -u REDIS_URL NO_COLOR=1 '$bin' -s watch -n 2 --seed 42 --schedule '1 2 1 2'"
wait_for watch "next: WATCH journey"
for step in 1 2 3 4; do
  keys watch Space
  wait_for watch " $step #"
done
sleep 0.3
screen watch > assets/tui-step-watch.txt
keys watch q
