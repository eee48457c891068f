"""Post hoc, for the report only: ``ascplus``'s appearance candidates averaged instead of one chosen.

``ascplus`` (appearance ``auto``) trains one ASCPlus run per appearance transfer and keeps one by a
label-free rule (cross-candidate agreement). This asks whether *not choosing* would do better: the
softmax of all the candidates of a seed is averaged (:class:`SnapshotEnsemble`, the same averaging as
ASCPlus's snapshot ensemble) and the averaged model segments the target test split, scored by the
bench's evaluation path (``score_test_predictions``, target test split only). Beside it, the pick
the same agreement rule makes when the mixture candidate (``mix``, which draws from the other
transfers and so agrees with each of them a little by construction) neither votes nor stands, from
the recorded agreement matrix. Nothing here is fed back into any run.

    python benchmarks/candidate_ensemble.py bench/abdominal-ct2mr --seeds 0 1 2 \
        --json bench/abdominal-ct2mr/candidate_ensemble.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from diffuse_uda.data.io import atomic_write_json
from diffuse_uda.evaluation.evaluate import load_summary
from diffuse_uda.evaluation.prediction_info import write_prediction_info
from diffuse_uda.inference.predict import segment_split
from diffuse_uda.networks.ensemble import SnapshotEnsemble
from diffuse_uda.pipeline.appearance_choice import read_choice
from diffuse_uda.pipeline.experiment import score_test_predictions
from diffuse_uda.training.bundle import load_bundle
from diffuse_uda.training.trainer import resolve_device

MIXTURE = "mix"


def ensemble_dice(bench: Path, seed: int, device: torch.device) -> dict:
    choice = read_choice(bench / "ascplus" / f"seed{seed}")
    if choice is None:
        raise SystemExit(f"{bench}/ascplus/seed{seed}: no appearance_choice.json (run the ascplus row first)")
    # The bench's own ascplus-<name> rows when present (the folder may have moved since the choice was recorded).
    runs = {name: (bench / f"ascplus-{name}" / f"seed{seed}" if (bench / f"ascplus-{name}" / f"seed{seed}").is_dir()
                   else Path(path)) for name, path in choice.candidates.items()}
    bundles = [load_bundle(run, device) for run in runs.values()]
    network = SnapshotEnsemble([b.network for b in bundles]).eval()
    task, cfg = bundles[0].task, bundles[0].preprocessing
    with tempfile.TemporaryDirectory() as tmp:
        predictions = Path(tmp) / "predictions"
        predictions.mkdir()
        write_prediction_info(predictions, bundles[0].labels, model="ensemble of " + ", ".join(runs),
                              method="ascplus-candidate-ensemble", dataset=str(task.target_dir), split="Ts",
                              orientation="dataset")
        segment_split(network, cfg, task.target_dir, predictions, "Ts", device, progress=False)
        summary = score_test_predictions(predictions, task, Path(tmp), progress=False)
    pure = [n for n in choice.agreement if n != MIXTURE]
    vote = {a: sum(choice.agreement[a][b] for b in pure if b != a) / max(len(pure) - 1, 1) for a in pure}
    without_mixture = max(pure, key=lambda n: (vote[n], -pure.index(n)))
    members = {name: 100 * load_summary(run / "evaluation" / "summary.json").mean("dice")
               for name, run in runs.items()}
    return {"seed": seed, "candidates": list(runs), "chosen": choice.chosen,
            "ensemble_dice": 100 * summary.mean("dice"),
            "ensemble_per_class": {c: 100 * summary.mean("dice", c) for c in summary.class_names},
            "chosen_dice": members[choice.chosen], "member_dice": members,
            "chosen_without_mixture": without_mixture, "chosen_without_mixture_dice": members[without_mixture],
            "best_member": max(members, key=members.get), "mean_member_dice": sum(members.values()) / len(members)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path, help="bench folder holding ascplus/seedN and its candidates' runs")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    device = resolve_device(args.device)
    rows = [ensemble_dice(args.bench, seed, device) for seed in args.seeds]
    print("| seed | chosen (Dice) | ensemble | vote without mix (Dice) | best member (Dice) | mean of members |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['chosen']} ({r['chosen_dice']:.1f}) | {r['ensemble_dice']:.1f} | "
              f"{r['chosen_without_mixture']} ({r['chosen_without_mixture_dice']:.1f}) | "
              f"{r['best_member']} ({r['member_dice'][r['best_member']]:.1f}) | {r['mean_member_dice']:.1f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.json, {"bench": str(args.bench), "rows": rows})


if __name__ == "__main__":
    main()
