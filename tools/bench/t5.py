#!/usr/bin/env python3
"""Time transformers' T5EncoderModel on T5-XXL shapes, for comparison with kinograph's T5 encoder.

Mirrors the ignored Rust test `t5_xxl_bf16_encode_time_and_peak_memory` in `models/tests/t5.rs`: random
weights with T5-XXL shapes (`--layers` of the 24 blocks), one prompt tokenized with the same T5 v1.1
`tokenizer.json`, padded to 128 tokens with ComfyUI's attention mask, batch 1, two threads.

torch keeps weights in the dtype it computes in, so `--dtype float32` (the Rust code's compute dtype)
needs 4 bytes per parameter: 19 GB for all 24 layers, more than these 24 GB machines can spare beside
anything else. The default is therefore 4 layers, and the per-layer time is extrapolated to 24.
`--dtype bfloat16` shows torch's bf16 CPU path (bf16 storage and compute).

Usage:
    /work/venv-fixtures/bin/python tools/bench/t5.py [--layers 4] [--dtype float32] [--runs 2]
"""

from __future__ import annotations

import argparse
import math
import resource
import time
from pathlib import Path

import torch
from transformers import T5Config, T5EncoderModel, T5TokenizerFast

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = ROOT / "models/src/t5/tokenizer.json"
PROMPT = "A woman with long brown hair smiles at the camera in warm evening light."


def xxl_config(layers: int) -> T5Config:
    return T5Config(
        vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=layers, num_heads=64,
        relative_attention_num_buckets=32, relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu", dropout_rate=0.0, is_encoder_decoder=False, use_cache=False,
    )


def randomise(model: torch.nn.Module) -> None:
    """Uniform weights with the Rust benchmark's spreads (norms near 1, projections 1/sqrt(fan-in))."""
    generator = torch.Generator().manual_seed(0)
    for name, parameter in model.named_parameters():
        if name.endswith("layer_norm.weight"):
            center, deviation = 1.0, 0.05
        elif "relative_attention_bias" in name:
            center, deviation = 0.0, 0.5
        elif name.endswith("shared.weight") or name.endswith("embed_tokens.weight"):
            center, deviation = 0.0, 1.0
        else:
            center, deviation = 0.0, 1.0 / math.sqrt(parameter.shape[1])
        half_width = deviation * math.sqrt(3.0)
        with torch.no_grad():
            parameter.uniform_(center - half_width, center + half_width, generator=generator)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    started = time.perf_counter()
    with torch.device("meta"):
        model = T5EncoderModel(xxl_config(args.layers))
    model = model.to_empty(device="cpu").to(dtype).eval()
    randomise(model)
    parameters = sum(p.numel() for p in model.parameters())  # the tied embedding counts once
    print(f"torch {torch.__version__}, {args.threads} threads, T5-XXL shapes, {args.layers} layers, "
          f"{parameters / 1e9:.2f} B parameters in {args.dtype}: built in {time.perf_counter() - started:.1f} s")

    tokenizer = T5TokenizerFast(tokenizer_file=str(TOKENIZER))
    encoded = tokenizer(PROMPT, padding="max_length", max_length=args.tokens, return_tensors="pt")
    timings = []
    with torch.inference_mode():
        for run in range(args.runs):
            started = time.perf_counter()
            hidden = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).last_hidden_state
            seconds = time.perf_counter() - started
            assert torch.isfinite(hidden).all()
            print(f"encode {args.tokens} tokens (run {run}): {seconds:.2f} s")
            timings.append(seconds)
    best = min(timings)
    per_layer = best / max(args.layers, 1)
    print(f"best {best:.2f} s for {args.layers} layers ({per_layer:.3f} s per layer; 24 layers ≈ {per_layer * 24:.1f} s); "
          f"peak RSS {peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
