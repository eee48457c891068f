"""Norms of a domain-conditioned generator's domain vectors beside those of its timestep embedding (session 17).

MONAI's ``DiffusionModelUNet`` adds the class (here: domain) embedding to the timestep embedding; this prints both
norms, and how far the timestep embedding moves between timesteps, for each checkpoint given.

    python benchmarks/domain_embedding_scale.py RUN/3_diffusion/diffusion_last.pt ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from monai.networks.nets.diffusion_model_unet import get_timestep_embedding

from diffuse_uda.diffusion.trainer import load_diffusion
from diffuse_uda.networks.conditional_unet import DOMAIN_INDEX


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", type=Path, nargs="+")
    args = ap.parse_args()
    for path in args.checkpoints:
        model, cfg, _ = load_diffusion(path)
        unet = model.unet
        T = cfg.num_train_timesteps
        t = torch.tensor([0, T // 5, T // 2, 4 * T // 5, T - 1])
        emb = unet.time_embed(get_timestep_embedding(t, unet.block_out_channels[0]))
        line = (f"{path}: timestep embedding norm at t = {t.tolist()}: "
                + ", ".join(f"{v:.2f}" for v in emb.norm(dim=1).tolist())
                + "; |e(t) - e(T-1)|: " + ", ".join(f"{v:.2f}" for v in (emb[:-1] - emb[-1]).norm(dim=1).tolist()))
        if getattr(model, "num_domains", 0):
            w = unet.class_embedding.weight
            line += "; domain vectors " + ", ".join(f"{name} {w[i].norm():.2f}" for name, i in DOMAIN_INDEX.items())
            line += f"; |target - source| = {(w[DOMAIN_INDEX['target']] - w[DOMAIN_INDEX['source']]).norm():.2f}"
        print(line)


if __name__ == "__main__":
    main()
