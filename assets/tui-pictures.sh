#!/usr/bin/env bash
# Remakes the TUI pictures in assets/ from a real terminal: racelab in tmux at 100×32, on its own
# private redis-server. tui-naive-live.txt is mid-run (updates flipping back), tui-naive.txt the
# end of the naive run, tui-compare.txt the comparison of every strategy.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/racelab"
sock="racelab-pictures-$$"
trap 'tmux -L "$sock" kill-server 2>/dev/null || true; rm -f "${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)/$sock"' EXIT
tmux -L "$sock" new-session -d -x 100 -y 32 -s pic "env -u REDIS_URL NO_COLOR=1 '$bin' --seed 42"
screen() { tmux -L "$sock" capture-pane -p -t pic; }
wait_for() {
  # $2: seconds to wait; the comparison runs lock and fenced one updater at a time.
  for _ in $(seq $((${2:-30} * 20))); do
    screen | grep -q -- "$1" && return 0
    sleep 0.05
  done
  echo "the screen never showed '$1'" >&2
  exit 1
}
wait_for "idle: press Enter"
tmux -L "$sock" send-keys -t pic Enter
wait_for "wrote its stale copy"
sleep 0.4
screen > assets/tui-naive-live.txt
wait_for "updates lost"
sleep 0.2
screen > assets/tui-naive.txt
tmux -L "$sock" send-keys -t pic c
wait_for "comparison done" 300
screen > assets/tui-compare.txt
tmux -L "$sock" send-keys -t pic q
