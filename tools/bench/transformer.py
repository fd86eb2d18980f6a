"""Times one forward of diffusers' LTX-Video 2B transformer (random weights, f32, CPU) at 512x768x9.

The latent grid is 2x16x24 = 768 tokens with 128 text tokens, the same shapes as
`kinograph_nodes::models::ltxv::transformer::bench::bench_2b_forward` (the ignored test
`bench_2b_forward_512x768x9` in models/tests/ltxv_transformer.rs). Run with the fixture venv:

    /work/venv-fixtures/bin/python tools/bench/transformer.py [--threads 2] [--runs 2]
"""

import argparse
import time

import torch
from diffusers import LTXVideoTransformer3DModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2, help="forward passes; the first warms up")
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--height", type=int, default=16)
    parser.add_argument("--width", type=int, default=24)
    parser.add_argument("--text-tokens", type=int, default=128)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    # The constructor's defaults are the 2B configuration (28 layers, 32 heads x 64, caption 4096).
    model = LTXVideoTransformer3DModel().eval()
    print(f"build {time.perf_counter() - start:.2f} s")

    tokens = args.frames * args.height * args.width
    hidden = torch.randn(1, tokens, 128)
    text = torch.randn(1, args.text_tokens, 4096)
    mask = torch.ones(1, args.text_tokens)
    timestep = torch.tensor([500.0])
    with torch.inference_mode():
        for run in range(args.runs):
            start, cpu_start = time.perf_counter(), time.process_time()
            out = model(
                hidden_states=hidden,
                encoder_hidden_states=text,
                timestep=timestep,
                encoder_attention_mask=mask,
                num_frames=args.frames,
                height=args.height,
                width=args.width,
                rope_interpolation_scale=(8 / 25, 32, 32),
                return_dict=False,
            )[0]
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            print(f"forward {run}: {wall:.3f} s wall, cpu {cpu:.2f} s")
    assert tuple(out.shape) == (1, tokens, 128)


if __name__ == "__main__":
    main()
