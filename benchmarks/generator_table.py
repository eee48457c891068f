"""Tables of generator fidelity and speed from ``bench_synthesis.py`` outputs (issue 14).

One row per (task, generator, sampler), then one line per (task, generator) on issue 14's few-step goal: each
few-step sampler against DDPM-250 in mask fidelity (goal: within 1 point, in at most 25 network evaluations, 10x
faster). Style fidelity is printed only where the file's domain classifier separates real source from real
target images (held-out accuracy >= 75 %), as the pipeline's guidance choice uses it.

    python benchmarks/generator_table.py --only ddpm --only 'ddim:25:.*:1$' \\
        mscmr-bssfp2lge/default=benchmarks/results/synthesis/generators/mscmr-bssfp2lge_seed0_default.json ...
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

STYLE_ACCURACY = 0.75


def _pct(v: float | None, std: float | None = None) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def network_evaluations(sampler: str) -> int:
    """Forward passes per image: the steps, twice as many under classifier-free guidance."""
    name, steps, *rest = sampler.split(":")
    guided = bool(rest) and float(rest[0]) != 1.0
    return int(steps) * (2 if guided else 1)


def full_solve(rows: list[dict]) -> dict | None:
    """A generator's reference row: DDPM with all training steps, or for a rectified-flow generator (Euler
    steps only) the finest Euler solve of its ODE."""
    ddpm = next((r for r in rows if r["sampler"].startswith("ddpm:")), None)
    euler = [r for r in rows if r["sampler"].startswith("euler:")]
    if ddpm is not None or not euler:
        return ddpm
    return max(euler, key=lambda r: int(r["sampler"].split(":")[1]))


def rows_of(label: str, path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    task, _, generator = label.partition("/")
    accuracy = data.get("classifier_heldout_accuracy")
    out = []
    for row in data["rows"]:
        lf = row.get("label_free", {})
        out.append({
            "task": task, "generator": generator, "sampler": row["sampler"],
            "oracle": row.get("dice_mean"), "oracle_std": row.get("dice_std"),
            "stage1": lf.get("mask_fidelity_mean"), "stage1_std": lf.get("mask_fidelity_std"),
            "style": lf.get("style_fidelity") if accuracy is not None and accuracy >= STYLE_ACCURACY else None,
            "accuracy": accuracy, "fd_target": lf.get("frechet_distance_target"),
            "fd_source": lf.get("frechet_distance_source"), "seconds": row["seconds_per_image"],
            "nfe": network_evaluations(row["sampler"]),
        })
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="TASK/GENERATOR=bench_synthesis.json")
    ap.add_argument("--few-step", default="ddim:25:.*:1$",
                    help="regular expression of the pipeline's few-step sampler (default: DDIM-25, eta 1; a "
                         "rectified-flow generator: Euler-25)")
    ap.add_argument("--only", action="append", default=None,
                    help="print only samplers matching one of these regular expressions in the first table "
                         "(repeatable, e.g. --only ddpm --only 'ddim:25:.*:1$')")
    args = ap.parse_args()
    rows: list[dict] = []
    for item in args.files:
        label, _, path = item.partition("=")
        rows += rows_of(label, Path(path))
    shown = rows if args.only is None else [r for r in rows if any(re.match(o, r["sampler"]) for o in args.only)]

    print("| task | generator | sampler | NFE | oracle mask fidelity (%) | stage-1 mask fidelity (%) "
          "| style fidelity (%) | FD target | FD source | s / image |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in shown:
        fd = [f"{r[k]:.2f}" if r[k] is not None else "-" for k in ("fd_target", "fd_source")]
        print(f"| {r['task']} | {r['generator']} | {r['sampler']} | {r['nfe']} | {_pct(r['oracle'], r['oracle_std'])} "
              f"| {_pct(r['stage1'], r['stage1_std'])} | {_pct(r['style'])} | {fd[0]} | {fd[1]} | {r['seconds']:.2f} |")

    groups = {key: [r for r in rows if (r["task"], r["generator"]) == key]
              for key in dict.fromkeys((r["task"], r["generator"]) for r in rows)}
    references = {key: full_solve(mine) for key, mine in groups.items()}
    few = sorted({r["sampler"].split(":")[0] + ":" + r["sampler"].split(":")[1] + (
        ":eta" + r["sampler"].split(":")[3] if r["sampler"].startswith("ddim") and len(r["sampler"].split(":")) > 3
        else "") for r in rows if r is not references[(r["task"], r["generator"])]})
    print("\nEach few-step sampler against DDPM-250 on the same generator (a rectified-flow generator: against its "
          "finest Euler solve): oracle mask fidelity difference (points; stage-1 mask fidelity difference in "
          "brackets); the goal is within 1 point in <= 25 network evaluations, >= 10x faster.\n")
    print("| task | generator | " + " | ".join(few) + " | speed-up of the pipeline's sampler | "
          "domain classifier accuracy (%) |")
    print("|---|---|" + "---|" * (len(few) + 2))
    for (task, generator), mine in groups.items():
        ddpm = references[(task, generator)]
        if ddpm is None:
            continue
        cells = []
        for name in few:
            sampler, _, eta = name.partition(":eta")
            match = [r for r in mine if r["sampler"].startswith(sampler + ":") and (
                not eta or r["sampler"].split(":")[3] == eta)]
            if not match or match[0]["oracle"] is None or ddpm["oracle"] is None:
                cells.append("-")
                continue
            r = match[0]
            stage1 = "" if r["stage1"] is None else f" ({100 * (r['stage1'] - ddpm['stage1']):+.1f})"
            cells.append(f"{100 * (r['oracle'] - ddpm['oracle']):+.1f}{stage1}, {r['nfe']} NFE")
        chosen = next((r for r in mine if re.match(args.few_step, r["sampler"])), None) or next(
            (r for r in mine if r["sampler"].startswith("euler:25:") and r is not ddpm), None)
        speed = f"{ddpm['seconds'] / chosen['seconds']:.1f}x" if chosen else "-"
        print(f"| {task} | {generator} | " + " | ".join(cells) + f" | {speed} | {_pct(ddpm['accuracy'])} |")


if __name__ == "__main__":
    main()
