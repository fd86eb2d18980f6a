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
# Prints what tools/bench/measured_run.sh prints (peak RSS, wall time, sampled memory, streamed models, each
# node's time) and exits with kinograph's status.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:?usage: $0 MODELS_DIR [kinograph run options...]}
dir=$(cd "$dir" && pwd)
shift
kinograph=${KINOGRAPH:-${CARGO_TARGET_DIR:-$root/target}/release/kinograph}
python=${PYTHON:-python3}
make=$root/tools/fixtures/make_full_size_checkpoints.py
workflow=$root/tools/bench/ltxv_t2v_384x256x25.json

files=("$dir/checkpoints/ltxv-2b-random-v095.safetensors" "$dir/text_encoders/t5xxl-random-bf16.safetensors")
sparse=()
[[ ${SPARSE:-0} == 1 ]] && sparse=(--sparse)
[[ -f ${files[0]} ]] || "$python" "$make" "$dir" --only ltxv --ltxv-versions v095 "${sparse[@]}"
[[ -f ${files[1]} ]] || "$python" "$make" "$dir" --only t5 "${sparse[@]}"
[[ -x $kinograph ]] || { echo "no kinograph binary at $kinograph (cargo build --release -p kinograph)" >&2; exit 2; }

echo "kinograph $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- . ':!tools' || echo '+dirty'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
ls -l "${files[@]}"
exec "$root/tools/bench/measured_run.sh" "$kinograph" "$workflow" "$dir" "$@"
