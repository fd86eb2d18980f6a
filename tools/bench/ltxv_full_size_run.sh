#!/usr/bin/env bash
# One real-size LTX-Video text-to-video run on random weights: peak memory and time, with and without a budget.
#
# Runs tools/bench/ltxv_t2v_384x256x25.json (workflows/ltxv_text_to_video.json at 384×256×25, LTXVScheduler 2
# steps, euler, CFG 3, VAE decode, MP4) on files written by tools/fixtures/make_full_size_checkpoints.py when
# missing (see tools/fixtures/README.md):
#   checkpoints/ltxv-2b-random-v095.safetensors   the 2B transformer and the 0.9.5 VAE in bf16 (6.3 GB)
#   text_encoders/t5xxl-random-bf16.safetensors    T5-XXL's encoder in bf16 (9.5 GB)
#
# Usage: tools/bench/ltxv_full_size_run.sh DIR [kinograph run options...]
#   DIR         models folder holding (or receiving) the files; outputs go to DIR/output, logs to DIR/logs
#   options     passed to `kinograph run` (e.g. --ram-budget 8G)
#   KINOGRAPH   the binary (default: $CARGO_TARGET_DIR or ./target, release/kinograph)
#   PYTHON      a Python with numpy, torch, diffusers and transformers (default: python3)
#   SPARSE      1: write missing files with `--sparse` (every weight zero, the data a hole taking no disk): the same
#               memory as random weights, without the disk reads; give such files a folder of their own
# Prints peak RSS and wall time (from /usr/bin/time -v), the peak anonymous and file-backed resident memory
# (sampled from /proc every second), each node's time (from the `--events json` messages, timestamped as they
# arrive) and which models streamed their blocks. Exits with kinograph's status.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:?usage: $0 MODELS_DIR [kinograph run options...]}
dir=$(cd "$dir" && pwd)
shift
kinograph=${KINOGRAPH:-${CARGO_TARGET_DIR:-$root/target}/release/kinograph}
python=${PYTHON:-python3}
make=$root/tools/fixtures/make_full_size_checkpoints.py
workflow=$root/tools/bench/ltxv_t2v_384x256x25.json
logs=$dir/logs
mkdir -p "$logs" "$dir/output"

files=("$dir/checkpoints/ltxv-2b-random-v095.safetensors" "$dir/text_encoders/t5xxl-random-bf16.safetensors")
sparse=()
[[ ${SPARSE:-0} == 1 ]] && sparse=(--sparse)
[[ -f ${files[0]} ]] || "$python" "$make" "$dir" --only ltxv --ltxv-versions v095 "${sparse[@]}"
[[ -f ${files[1]} ]] || "$python" "$make" "$dir" --only t5 "${sparse[@]}"
[[ -x $kinograph ]] || { echo "no kinograph binary at $kinograph (cargo build --release -p kinograph)" >&2; exit 2; }

echo "kinograph $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- . ':!tools' || echo '+dirty'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
ls -l "${files[@]}"
echo "$kinograph run $workflow --models-dir $dir --output-dir $dir/output --events json $*"

# Timestamps each JSON line as it arrives (the messages of nodes starting and finishing carry none).
stamp() { python3 -u -c 'import sys, time
for line in sys.stdin:
    print(f"{time.time():.3f} {line}", end="", flush=True)'; }

set +e
KINOGRAPH_LOG=${KINOGRAPH_LOG:-info} /usr/bin/time -v -o "$logs/time.txt" "$kinograph" run "$workflow" \
    --models-dir "$dir" --output-dir "$dir/output" --events json "$@" 2> "$logs/stderr.txt" | stamp > "$logs/events.jsonl" &
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

grep -h "streaming the" "$logs/stderr.txt" | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^.*loaded_models: //' || true
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
