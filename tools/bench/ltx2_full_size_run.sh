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
# Prints what tools/bench/measured_run.sh prints (peak RSS, wall time, sampled memory, streamed models, each
# node's time) and exits with kinograph's status.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:?usage: $0 MODELS_DIR}
dir=$(cd "$dir" && pwd)
variant=${2:-fp8}
shift $(( $# < 2 ? $# : 2 ))
kinograph=${KINOGRAPH:-${CARGO_TARGET_DIR:-$root/target}/release/kinograph}
python=${PYTHON:-python3}
make=$root/tools/fixtures/make_full_size_checkpoints.py

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
exec "$root/tools/bench/measured_run.sh" "$kinograph" "$workflow" "$dir" "$@"
