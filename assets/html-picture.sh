#!/usr/bin/env bash
# Remakes assets/html-timeline.png: a naive run of 20 updaters written with --html, opened in
# headless chromium (Debian's `chromium`) at 1400×900, with the pointer over #3's write so the
# picture shows a tooltip too (a line of script added to a copy of the page moves it there).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/racelab"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
env -u REDIS_URL "$bin" run -s naive -n 20 --seed 42 --html "$dir/run.html" >/dev/null
hover='<script>(function(){var s=document.querySelector(".scroll"),r=s.getBoundingClientRect();s.dispatchEvent(new MouseEvent("mousemove",{clientX:r.left+1240,clientY:r.top+81,bubbles:true}));})();</script></body>'
sed "s#</body>#${hover}#" "$dir/run.html" >"$dir/hover.html"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$dir/profile" \
  --window-size=1400,900 --screenshot="$PWD/assets/html-timeline.png" "$dir/hover.html" 2>/dev/null
