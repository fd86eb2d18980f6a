#!/usr/bin/env bash
# Takes a screenshot of the node editor with a workflow open, under a virtual X server, for the README:
# by default ComfyUI's LTX-Video text-to-video template, as docs/images/editor-ltxv-text-to-video.png.
# Further arguments go to `kinograph edit` (e.g. `--subgraph 92` to show the inside of a subgraph node).
#
# Needs Debian's xvfb, xdotool and imagemagick (apt-get install xvfb xdotool imagemagick) and a built
# binary (cargo build --release). wgpu draws with Mesa's software renderer under Xvfb.
#
# Usage: tools/screenshots/editor.sh [WORKFLOW] [OUTPUT.png] [kinograph edit options...]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
workflow="${1:-tests/data/comfy-templates/ltxv_text_to_video.json}"
output="${2:-docs/images/editor-ltxv-text-to-video.png}"
shift $(( $# < 2 ? $# : 2 ))
binary="${KINOGRAPH:-target/release/kinograph}"
size="1600x1000"

for tool in Xvfb xdotool import; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install xvfb xdotool imagemagick)" >&2; exit 1; }
done
[[ -x "$binary" ]] || { echo "error: $binary not found; run cargo build --release first" >&2; exit 1; }
[[ -f "$workflow" ]] || { echo "error: no workflow at $workflow" >&2; exit 1; }

display=":$((90 + RANDOM % 9))"
Xvfb "$display" -screen 0 "${size}x24" -nolisten tcp &
xvfb=$!
cleanup() {
    kill "${editor:-}" "$xvfb" 2>/dev/null || true
}
trap cleanup EXIT
sleep 1

DISPLAY="$display" "$binary" edit "$workflow" "$@" &
editor=$!
# Wait for the window, make it fill the screen, and give it a few frames to lay out and draw.
for _ in $(seq 1 60); do
    window=$(DISPLAY="$display" xdotool search --name kinograph 2>/dev/null | head -n 1 || true)
    [[ -n "$window" ]] && break
    sleep 0.5
done
[[ -n "${window:-}" ]] || { echo "error: the editor window did not appear" >&2; exit 1; }
DISPLAY="$display" xdotool windowsize "$window" "${size%x*}" "${size#*x}" windowmove "$window" 0 0
sleep 4
mkdir -p "$(dirname "$output")"
DISPLAY="$display" import -window root "$output"
echo "wrote $output"
