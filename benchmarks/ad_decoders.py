"""Why an A&D run loses a class: what each of its decoders predicts on the target training images.

A&D predicts with the unlabelled decoder ``theta`` alone, and after every step moves ``theta`` toward
the parameter mean of the denoising decoder ``xi`` and the difficulty-aware decoder ``psi``. For a
finished run (its ``checkpoint_last.pt``) this prints, per class, the share of target-training pixels
each of ``psi``, ``theta`` and the parameter-mean decoder ``(xi + psi) / 2`` assigns to it (on the
image-only features ``theta`` sees), and the per-class Dice agreement of ``theta`` and of the mean
decoder with ``psi``. No label is read.

    python benchmarks/ad_decoders.py bench/mscmr-ad/ad/seed2 bench/mscmr-ad-indep/ad/seed2 \
        --json benchmarks/results/ad-decoders/mscmr_seed2.json
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch

from diffuse_uda.data.io import safe_torch_load
from diffuse_uda.data.preprocessing import prepare_split, stack_samples
from diffuse_uda.networks.ad_network import ADNetwork
from diffuse_uda.training.bundle import load_bundle


@torch.no_grad()
def decoder_shares(run: Path, max_images: int = 256) -> dict[str, object]:
    bundle = load_bundle(run)
    task = bundle.task
    checkpoint = safe_torch_load(run / "checkpoint_last.pt", "A&D training checkpoint")
    dims = bundle.preprocessing.spatial_dims
    state = checkpoint["method"]["network"]
    ad = bundle.spec["ad"]
    net = ADNetwork(dims, int(bundle.spec["in_channels"]), task.num_classes,
                    ad["features"], ad["levels"], diffusion=any(k.startswith("xi.") for k in state))
    net.load_state_dict(state)
    net.eval()
    mean_decoder = copy.deepcopy(net.psi)
    if net.xi is not None:
        for p_mean, p_xi, p_psi in zip(mean_decoder.parameters(), net.xi.parameters(), net.psi.parameters(),
                                       strict=True):
            p_mean.copy_((p_xi + p_psi) / 2)
    cases = prepare_split(task.target_dir, "Tr", bundle.preprocessing, with_labels=False, progress=False)
    images, _ = stack_samples(cases, dims)
    images = images[torch.linspace(0, len(images) - 1, min(max_images, len(images))).long()]
    preds: dict[str, list[torch.Tensor]] = {"psi": [], "theta": [], "mean(xi,psi)": []}
    for chunk in images.split(32):
        feats = net.encoder(chunk)
        preds["psi"].append(net.psi(feats).argmax(1))
        preds["theta"].append(net.theta(feats).argmax(1))
        preds["mean(xi,psi)"].append(mean_decoder(feats).argmax(1))
    maps = {k: torch.cat(v) for k, v in preds.items()}
    names = [n for n, v in sorted(task.labels.items(), key=lambda kv: kv[1]) if v != 0]
    values = [v for _, v in sorted(task.labels.items(), key=lambda kv: kv[1]) if v != 0]
    out: dict[str, object] = {"run": str(run), "images": len(images),
                              "shared_init": checkpoint["config"]["method"].get("shared_init", True)}
    for key, m in maps.items():
        out[key] = {n: float((m == v).float().mean()) for n, v in zip(names, values, strict=True)}
    for key in ("theta", "mean(xi,psi)"):
        agree = {}
        for n, v in zip(names, values, strict=True):
            a, b = maps[key] == v, maps["psi"] == v
            agree[n] = float(2 * (a & b).sum() / (a.sum() + b.sum()).clamp_min(1))
        out[f"dice_{key}_vs_psi"] = agree
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+", help="A&D run folders with checkpoint_last.pt")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = [decoder_shares(run) for run in args.runs]
    for row in rows:
        print(json.dumps(row, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
