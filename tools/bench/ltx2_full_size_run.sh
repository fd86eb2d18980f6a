#!/usr/bin/env bash
# One real-size LTX-2 text-to-video run on random weights: peak memory and time.
#
# Runs stage 1 of workflows/ltx2_text_to_video.json alone (384×256×49 at 24 fps with sound, LTXVScheduler 2 steps,
# euler, CFG 4, tiled VAE decode, MP4 with AAC) with Gemma 3 12B as a llama.cpp Q4_K GGUF
# (text_encoders/gemma-3-12b-random-Q4_K.gguf) and the transformer from one of three files, written by
# tools/fixtures/make_full_size_checkpoints.py when missing (see tools/fixtures/README.md):
#   fp8 (default): tools/bench/ltx2_t2v_384x256x49.json on
#     checkpoints/ltx2-19b-random-fp8.safetensors    the 19B single file as ltx-2-19b-dev-fp8.safetensors stores it
#                                                    (fp8 block linears with their scales, the rest bf16; 24.7 GB),
#                                                    which also gives the connectors (DualCLIPLoaderGGUF's second
#                                                    file, through a link in text_encoders/) and the VAEs
#   gguf: tools/bench/ltx2_t2v_gguf_384x256x49.json on
#     unet/ltx2-19b-random-Q4_K.gguf                 the transformer as a ComfyUI-GGUF Q4_K file (12.6 GB)
#   bf16: tools/bench/ltx2_t2v_bf16_384x256x49.json on
#     diffusion_models/ltx2-19b-random-transformer.safetensors
#                                                    the transformer alone in bf16 (37.8 GB), through UNETLoader
#   gguf and bf16 read the text projection, connectors, VAEs and vocoder from
#     checkpoints/ltx2-19b-random-parts.safetensors  (as a VAE and as DualCLIPLoaderGGUF's second file, through
#                                                    links in vae/ and text_encoders/)
#
# Usage: tools/bench/ltx2_full_size_run.sh DIR [fp8|gguf|bf16] [kinograph run options...]
#   DIR         models folder holding (or receiving) the files; outputs go to DIR/output, logs to DIR/logs
#   options     passed to `kinograph run` (e.g. --ram-budget 16G)
#   KINOGRAPH   the binary (default: $CARGO_TARGET_DIR or ./target, release/kinograph)
#   PYTHON      a Python with numpy, and torch + diffusers + transformers unless DIR/layouts/ is already cached
#               (default: python3)
# Prints peak RSS and wall time (from /usr/bin/time -v), the peak anonymous and file-backed resident memory
# (sampled from /proc every second) and each node's time (from the `--events json` messages, timestamped as
# they arrive). Exits with kinograph's status.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:?usage: $0 MODELS_DIR}
dir=$(cd "$dir" && pwd)
variant=${2:-fp8}
shift $(( $# < 2 ? $# : 2 ))
kinograph=${KINOGRAPH:-${CARGO_TARGET_DIR:-$root/target}/release/kinograph}
python=${PYTHON:-python3}
make=$root/tools/fixtures/make_full_size_checkpoints.py
logs=$dir/logs
mkdir -p "$logs" "$dir/output"

gemma=$dir/text_encoders/gemma-3-12b-random-Q4_K.gguf
parts=$dir/checkpoints/ltx2-19b-random-parts.safetensors
case $variant in
fp8)
    workflow=$root/tools/bench/ltx2_t2v_384x256x49.json
    files=("$dir/checkpoints/ltx2-19b-random-fp8.safetensors" "$gemma")
    [[ -f ${files[0]} ]] || "$python" "$make" "$dir" --only ltx2-fp8
    ln -sf ../checkpoints/ltx2-19b-random-fp8.safetensors "$dir/text_encoders/ltx2-19b-random-fp8.safetensors"
    ;;
gguf)
    workflow=$root/tools/bench/ltx2_t2v_gguf_384x256x49.json
    files=("$dir/unet/ltx2-19b-random-Q4_K.gguf" "$gemma" "$parts")
    [[ -f ${files[0]} && -f $parts ]] || "$python" "$make" "$dir" --only ltx2-q4k
    ;;
bf16)
    workflow=$root/tools/bench/ltx2_t2v_bf16_384x256x49.json
    files=("$dir/diffusion_models/ltx2-19b-random-transformer.safetensors" "$gemma" "$parts")
    [[ -f ${files[0]} ]] || "$python" "$make" "$dir" --only ltx2 --dtype bf16
    [[ -f $parts ]] || "$python" "$make" "$dir" --only ltx2-q4k
    ;;
*) echo "unknown variant '$variant': fp8, gguf or bf16" >&2; exit 2 ;;
esac
[[ -f $gemma ]] || "$python" "$make" "$dir" --only gemma-q4k
if [[ $variant != fp8 ]]; then
    mkdir -p "$dir/vae"
    ln -sf ../checkpoints/ltx2-19b-random-parts.safetensors "$dir/vae/ltx2-19b-random-parts.safetensors"
    ln -sf ../checkpoints/ltx2-19b-random-parts.safetensors "$dir/text_encoders/ltx2-19b-random-parts.safetensors"
fi
[[ -x $kinograph ]] || { echo "no kinograph binary at $kinograph (cargo build --release)" >&2; exit 2; }

echo "kinograph $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- . ':!tools' || echo '+dirty'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
ls -l "${files[@]}"
echo "$kinograph run $workflow --models-dir $dir --output-dir $dir/output --events json $*"

# Timestamps each JSON line as it arrives (the messages of nodes starting and finishing carry none).
stamp() { python3 -u -c 'import sys, time
for line in sys.stdin:
    print(f"{time.time():.3f} {line}", end="", flush=True)'; }

set +e
/usr/bin/time -v -o "$logs/time.txt" "$kinograph" run "$workflow" --models-dir "$dir" --output-dir "$dir/output" \
    --events json "$@" 2> "$logs/stderr.txt" | stamp > "$logs/events.jsonl" &
runner=$!
# The sampler watches kinograph itself (the child of time).
pid=""
for _ in $(seq 100); do
    pid=$(pgrep -n -x kinograph || true)
    [[ -n $pid ]] && break
    sleep 0.1
done
: > "$logs/memory.tsv"
while [[ -n $pid ]] && kill -0 "$pid" 2> /dev/null; do
    awk -v t="$(date +%s)" '/^Rss(Anon|File|Shmem):/ {v[$1] = $2} END {print t "\t" v["RssAnon:"] "\t" v["RssFile:"]}' \
        "/proc/$pid/status" >> "$logs/memory.tsv" 2> /dev/null
    sleep 1
done
wait $runner
status=$?
set -e

python3 - "$logs" "$workflow" <<'EOF'
import json, sys
from pathlib import Path

logs = Path(sys.argv[1])
time_text = (logs / "time.txt").read_text()
fields = dict(line.strip().split(": ", 1) for line in time_text.splitlines() if ": " in line)
peak_kib = int(fields["Maximum resident set size (kbytes)"])
print(f"peak RSS {peak_kib / 2**20:.2f} GiB, wall {fields['Elapsed (wall clock) time (h:mm:ss or m:ss)']}, "
      f"user {float(fields['User time (seconds)']):.0f} s, system {float(fields['System time (seconds)']):.0f} s, "
      f"exit {fields['Exit status']}")
rows = [line.split("\t") for line in (logs / "memory.tsv").read_text().splitlines() if line.count("\t") == 2]
rows = [(int(t), int(a or 0), int(f or 0)) for t, a, f in rows]
if rows:
    anon = max(rows, key=lambda r: r[1])
    both = max(rows, key=lambda r: r[1] + r[2])
    print(f"sampled each second: peak anonymous {anon[1] / 2**20:.2f} GiB; peak anonymous + file-backed "
          f"{(both[1] + both[2]) / 2**20:.2f} GiB ({both[1] / 2**20:.2f} + {both[2] / 2**20:.2f})")

classes = {node: spec["class_type"] for node, spec in json.loads(Path(sys.argv[2]).read_text()).items()}
started, finished, order, start_time = {}, {}, [], None
for line in (logs / "events.jsonl").read_text().splitlines():
    stamp, _, text = line.partition(" ")
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        continue
    t, kind, data = float(stamp), message.get("type"), message.get("data", {})
    if kind == "execution_start":
        start_time = t
    elif kind == "executing" and data.get("node") is not None:
        started.setdefault(data["node"], t)
        order.append(data["node"])
    elif kind == "progress_state":
        for node, state in data.get("nodes", {}).items():
            if state.get("state") == "finished":
                finished.setdefault(node, t)
    elif kind == "execution_error":
        print(f"error in node {data.get('node_id')} ({data.get('node_type')}): {data.get('exception_message')}")
print("node  class                          started     took")
for node in order:
    end = finished.get(node)
    took = f"{end - started[node]:8.1f} s" if end else "  (did not finish)"
    print(f"{node:>4}  {classes.get(node, '?'):28} {started[node] - (start_time or started[node]):7.1f} s {took}")
EOF
exit $status
