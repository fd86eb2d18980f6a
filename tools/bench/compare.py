"""Runs `kinograph bench` and the PyTorch reference scripts on the same shapes, one after the other on
the same machine, and prints each pair of timings with the ratio kinograph / PyTorch (below 1: faster).

Usage (after `cargo build --release`, with the fixture venv from tools/fixtures/requirements.txt):
    python tools/bench/compare.py [--parts transformer,vae,t5,ltx2-block,gemma-layer,audio,ltx2-block-gguf] [--t5-layers 4] [--runs 2] [--rounds 1]

Each side runs `--runs` times in one process and its best time counts. With `--rounds R` the pair runs
R times, alternating, and the median of the per-round ratios is printed as well: on a shared virtual
machine one run of either side can be a few percent off, and alternating spreads that over both.

`ltx2-block-gguf` compares kinograph with itself: one LTX-2 block with its matrices quantized as Q8_0 and
Q4_K GGUF blocks (in the column "PyTorch": the same block in f32, in the same process), the ratio below 1
where the quantized block is faster.

T5 runs with fewer than the 24 XXL blocks by default because PyTorch keeps T5-XXL in f32, 19 GB, which
does not fit beside anything else on a 24 GB machine; the per-block time is what is compared.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(command: list[str]) -> str:
    print("$", " ".join(command), file=sys.stderr, flush=True)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout


def best_of(pattern: str, text: str) -> float:
    values = [float(v) for v in re.findall(pattern, text)]
    if not values:
        raise SystemExit(f"no timing found for {pattern!r} in:\n{text}")
    return min(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinograph", default=str(ROOT / "target/release/kinograph"))
    parser.add_argument("--parts", default="transformer,vae,t5")
    parser.add_argument("--t5-layers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    parts = args.parts.split(",")
    rounds = [measure(args, parts) for _ in range(args.rounds)]
    print(f"{'benchmark':48} {'kinograph':>10} {'PyTorch':>10} {'ratio':>7}")
    for name in rounds[0]:
        pairs = [round_results[name] for round_results in rounds]
        for index, (ours, theirs) in enumerate(pairs):
            label = name if len(pairs) == 1 else f"{name} (round {index + 1})"
            print(f"{label:48} {ours:9.2f}s {theirs:9.2f}s {ours / theirs:7.2f}")
        if len(pairs) > 1:
            ratios = sorted(ours / theirs for ours, theirs in pairs)
            median = ratios[len(ratios) // 2] if len(ratios) % 2 else sum(ratios[len(ratios) // 2 - 1 :][:2]) / 2
            best = (min(p[0] for p in pairs), min(p[1] for p in pairs))
            print(f"{name + ' (best of all rounds)':48} {best[0]:9.2f}s {best[1]:9.2f}s {best[0] / best[1]:7.2f}")
            print(f"{name + ' (median ratio)':48} {'':10} {'':10} {median:7.2f}")
    return 0


def measure(args: argparse.Namespace, parts: list[str]) -> dict[str, tuple[float, float]]:
    """One round: each part's best time in kinograph, then in PyTorch."""
    results = {}
    if "transformer" in parts:
        ours = json.loads(run([args.kinograph, "bench", "--only", "transformer", "--runs", str(args.runs)]))
        theirs = run([sys.executable, "tools/bench/transformer.py", "--runs", str(args.runs)])
        results["transformer 2B forward, 768 tokens, f32"] = (
            ours["transformer"]["best_seconds"],
            best_of(r"forward \d+: ([0-9.]+) s wall", theirs),
        )
    if "vae" in parts:
        ours = json.loads(run([args.kinograph, "bench", "--only", "vae", "--runs", str(args.runs)]))
        theirs = run([sys.executable, "tools/bench/vae.py", "--runs", str(args.runs)])
        results["VAE 0.9.5 decode, latent 3x4x6, f32"] = (
            ours["vae"]["best_seconds"],
            best_of(r"decode \d+: \([^)]*\) in ([0-9.]+) s", theirs),
        )
    if "ltx2-block" in parts:
        ours = json.loads(run([args.kinograph, "bench", "--only", "ltx2-block", "--runs", str(args.runs)]))
        theirs = run([sys.executable, "tools/bench/ltx2.py", "--part", "block", "--runs", str(args.runs)])
        results["LTX-2 block, 768x512x97 + 101 audio, f32"] = (
            ours["ltx2_block"]["best_seconds"],
            best_of(r"forward \d+: ([0-9.]+) s wall", theirs),
        )
    if "gemma-layer" in parts:
        ours = json.loads(run([args.kinograph, "bench", "--only", "gemma-layer", "--runs", str(args.runs)]))
        theirs = run([sys.executable, "tools/bench/ltx2.py", "--part", "gemma", "--runs", str(args.runs)])
        results["Gemma 3 12B layer, 128 tokens, f32"] = (
            ours["gemma_layer"]["best_seconds"],
            best_of(r"encode \d+ tokens \(run \d+\): ([0-9.]+) s", theirs),
        )
    if "audio" in parts:
        ours = json.loads(run([args.kinograph, "bench", "--only", "audio", "--runs", str(args.runs)]))
        theirs = run([sys.executable, "tools/bench/ltx2.py", "--part", "audio", "--runs", str(args.runs)])
        for key, name in [("vae_decode", "audio VAE decode"), ("vocoder_20", "vocoder 2.0"),
                          ("vocoder_23_bwe", "vocoder 2.3 with BWE")]:
            results[f"LTX-2 {name}, 5 s of audio, f32"] = (
                ours["audio"][key]["best_seconds"],
                best_of(re.escape(name) + r" \(run \d+\): \([^)]*\) in ([0-9.]+) s", theirs),
            )
    if "ltx2-block-gguf" in parts:
        ours = json.loads(run([args.kinograph, "bench", "--only", "ltx2-block-gguf", "--gguf-types", "Q8_0,Q4_K",
                               "--runs", str(args.runs)]))["ltx2_block_gguf"]
        dense = next(w for w in ours["weights"] if w["weight"] == "F32")["timing"]["best_seconds"]
        tokens = f'{ours["video_tokens"]} + {ours["audio_tokens"]} tokens'
        for weight in ours["weights"]:
            if weight["weight"] != "F32":
                results[f'LTX-2 block {weight["weight"]} (f32 beside), {tokens}'] = (
                    weight["timing"]["best_seconds"],
                    dense,
                )
    if "t5" in parts:
        layers = str(args.t5_layers)
        ours = json.loads(run([args.kinograph, "bench", "--only", "t5", "--t5-layers", layers, "--runs", str(args.runs)]))
        theirs = run([sys.executable, "tools/bench/t5.py", "--layers", layers, "--runs", str(args.runs)])
        results[f"T5-XXL encode, 128 tokens, {layers} blocks"] = (
            ours["t5"]["best_seconds"],
            best_of(r"encode \d+ tokens \(run \d+\): ([0-9.]+) s", theirs),
        )
    return results

if __name__ == "__main__":
    raise SystemExit(main())
