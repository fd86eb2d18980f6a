"""Times the real-size LTX-Video 0.9.5 VAE decoder in PyTorch/diffusers on CPU, for comparison with
`benchmark_real_v095_decoder` in `models/tests/ltxv_vae.rs`.

Random weights (diffusers' default initialisation), a random 3x4x6 latent with 128 channels, decode
timestep 0.05, f32, two threads. Decodes `--runs` times (two by default) and prints each time.

    /work/venv-fixtures/bin/python tools/bench/vae.py [--runs 2]
"""

import argparse
import time

import torch
from diffusers import AutoencoderKLLTXVideo

torch.set_num_threads(2)
torch.manual_seed(0)

# The 0.9.5 VAE configuration (Lightricks/LTX-Video, the `vae/config.json` of the 0.9.5 diffusers folder).
CONFIG = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=128,
    block_out_channels=(128, 256, 512, 1024, 2048),
    decoder_block_out_channels=(256, 512, 1024),
    layers_per_block=(4, 6, 6, 2, 2),
    decoder_layers_per_block=(5, 5, 5, 5),
    spatio_temporal_scaling=(True, True, True, True),
    decoder_spatio_temporal_scaling=(True, True, True),
    decoder_inject_noise=(False, False, False, False),
    downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    upsample_residual=(True, True, True),
    upsample_factor=(2, 2, 2),
    timestep_conditioning=True,
    patch_size=4,
    patch_size_t=1,
    resnet_norm_eps=1e-6,
    scaling_factor=1.0,
    encoder_causal=True,
    decoder_causal=False,
    spatial_compression_ratio=32,
    temporal_compression_ratio=8,
    down_block_types=("LTXVideo095DownBlock3D",) * 4,
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    start = time.perf_counter()
    vae = AutoencoderKLLTXVideo(**CONFIG).eval()
    decoder = vae.decoder
    params = sum(p.numel() for p in decoder.parameters())
    print(f"built the 0.9.5 VAE in {time.perf_counter() - start:.2f} s; decoder has {params:,} parameters")
    latent = torch.randn(1, 128, 3, 4, 6)
    temb = torch.tensor([0.05])
    with torch.no_grad():
        for run in range(args.runs):
            start = time.perf_counter()
            video = decoder(latent, temb)
            print(f"decode {run}: {tuple(video.shape)} in {time.perf_counter() - start:.3f} s")


if __name__ == "__main__":
    main()
