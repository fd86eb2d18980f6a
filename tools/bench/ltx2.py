"""Times the PyTorch references of the LTX-2 parts `kinograph bench` times, on the same shapes, random
weights, CPU:

- `--part block`: diffusers' `LTX2VideoTransformer3DModel` with one block of the 19B configuration at
  768x512x97 (latent 13x16x24 = 4992 video tokens), 101 audio tokens and 1024 text tokens
  (`kinograph bench --only ltx2-block`);
- `--part gemma`: transformers' Gemma 3 12B text model with one layer on 128 tokens, vocabulary cut to
  1024 (`kinograph bench --only gemma-layer`);
- `--part audio`: diffusers' LTX-2 audio VAE decoder on 126 latents and the 2.0 vocoder and the 2.3 vocoder
  with bandwidth extension on 501 mel frames, 5 s of audio (`kinograph bench --only audio`).

Run with the fixture venv:

    python tools/bench/ltx2.py --part block [--threads 2] [--runs 2] [--dtype float32|bfloat16]
"""

import argparse
import time

import torch


def block(args) -> None:
    from diffusers import LTX2VideoTransformer3DModel

    torch.manual_seed(0)
    start = time.perf_counter()
    model = LTX2VideoTransformer3DModel(num_layers=1, rope_type="split", cross_attn_timestep_scale_multiplier=1000)
    model = model.to(getattr(torch, args.dtype)).eval()
    print(f"build {time.perf_counter() - start:.2f} s")
    frames, height, width = args.latent
    tokens = frames * height * width
    dtype = getattr(torch, args.dtype)
    video = torch.randn(1, tokens, 128, dtype=dtype)
    audio = torch.randn(1, args.audio_tokens, 128, dtype=dtype)
    context = torch.randn(1, args.text_tokens, 3840, dtype=dtype)
    t = torch.tensor([500.0])
    with torch.inference_mode():
        for run in range(args.runs):
            start, cpu_start = time.perf_counter(), time.process_time()
            model(
                hidden_states=video, audio_hidden_states=audio, encoder_hidden_states=context,
                audio_encoder_hidden_states=context, timestep=t, audio_timestep=t, sigma=t, audio_sigma=t,
                num_frames=frames, height=height, width=width, fps=24.0, audio_num_frames=args.audio_tokens,
                return_dict=False,
            )
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            print(f"forward {run}: {wall:.3f} s wall, cpu {cpu:.2f} s")


def gemma(args) -> None:
    from transformers import Gemma3TextConfig
    from transformers.models.gemma3.modeling_gemma3 import Gemma3TextModel

    config = Gemma3TextConfig(
        vocab_size=1024, hidden_size=3840, intermediate_size=15360, num_hidden_layers=1, num_attention_heads=16,
        num_key_value_heads=8, head_dim=256, sliding_window=1024, query_pre_attn_scalar=256,
        rope_scaling={"rope_type": "linear", "factor": 8.0}, rope_theta=1_000_000.0, rope_local_base_freq=10_000.0,
    )
    torch.manual_seed(0)
    start = time.perf_counter()
    model = Gemma3TextModel(config).to(getattr(torch, args.dtype)).eval()
    print(f"build {time.perf_counter() - start:.2f} s")
    ids = (torch.arange(args.tokens) * 7 % 1024).unsqueeze(0)
    with torch.inference_mode():
        for run in range(args.runs):
            start, cpu_start = time.perf_counter(), time.process_time()
            model(input_ids=ids, output_hidden_states=True)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            print(f"encode {args.tokens} tokens (run {run}): {wall:.3f} s wall, cpu {cpu:.2f} s")


def audio(args) -> None:
    from diffusers import AutoencoderKLLTX2Audio
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder, LTX2VocoderWithBWE

    torch.manual_seed(0)
    vae = AutoencoderKLLTX2Audio().eval()
    latent = torch.randn(1, 8, 126, 16)
    mel = torch.randn(1, 2, 501, 64) - 4.0
    parts = [("audio VAE decode", lambda: vae.decode(latent).sample)]
    for name, vocoder in [("vocoder 2.0", LTX2Vocoder().eval()), ("vocoder 2.3 with BWE", LTX2VocoderWithBWE().eval())]:
        parts.append((name, lambda vocoder=vocoder: vocoder(mel)))
    with torch.inference_mode():
        for name, run in parts:
            for index in range(args.runs):
                start = time.perf_counter()
                out = run()
                print(f"{name} (run {index}): {tuple(out.shape)} in {time.perf_counter() - start:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["block", "gemma", "audio"], required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--latent", type=int, nargs=3, default=[13, 16, 24])
    parser.add_argument("--audio-tokens", type=int, default=101)
    parser.add_argument("--text-tokens", type=int, default=1024)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    {"block": block, "gemma": gemma, "audio": audio}[args.part](args)


if __name__ == "__main__":
    main()
