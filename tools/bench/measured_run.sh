#!/usr/bin/env bash
# Runs one workflow with `kinograph run` and reports its memory and time; what the real-size run scripts
# (ltx2_full_size_run.sh, ltxv_full_size_run.sh) share.
#
# Usage: tools/bench/measured_run.sh KINOGRAPH WORKFLOW DIR [kinograph run options...]
#   runs `KINOGRAPH run WORKFLOW --models-dir DIR --output-dir DIR/output --events json options` with its logs in
#   DIR/logs (KINOGRAPH_LOG defaults to info, so that the loaders say which models stream their blocks)
# Prints peak RSS and wall time (from /usr/bin/time -v), the peak anonymous and file-backed resident memory
# (sampled from /proc every second), which models streamed their blocks and each node's time (from the
# `--events json` messages, timestamped as they arrive). Exits with kinograph's status.
set -euo pipefail

kinograph=${1:?usage: $0 KINOGRAPH WORKFLOW MODELS_DIR [kinograph run options...]}
workflow=${2:?usage: $0 KINOGRAPH WORKFLOW MODELS_DIR [kinograph run options...]}
dir=${3:?usage: $0 KINOGRAPH WORKFLOW MODELS_DIR [kinograph run options...]}
shift 3
logs=$dir/logs
mkdir -p "$logs" "$dir/output"
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
