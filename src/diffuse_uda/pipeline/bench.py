"""``diffuse-uda bench``: every method x seed on one task, through the same split, preprocessing and
evaluation, aggregated into one table (markdown, CSV, JSON).

Method entries are registry names (``ascplus``) or presets (``ascplus-M3``: a row of the paper's
Table-4 ablation). Per seed, a method's score is the mean over target-test cases; the table shows
mean ± std over seeds, and the fraction of the source-only -> oracle gap closed. Under torchrun every
run trains on all ranks; evaluation and the table are rank 0's.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from diffuse_uda.config import build_run_config
from diffuse_uda.data.dataset_json import load_dataset_json
from diffuse_uda.data.io import atomic_write_json, atomic_write_text, ensure_output_dir
from diffuse_uda.data.task import Task
from diffuse_uda.errors import ConfigError
from diffuse_uda.evaluation.evaluate import load_per_case
from diffuse_uda.evaluation.statistics import gap_closed, group_means, mean_std, wilcoxon_paired
from diffuse_uda.pipeline.appearance_choice import RULES, agreement_pick, bench_candidate_dirs, read_choice
from diffuse_uda.pipeline.bench_entries import check_entries, is_composite, resolve_method
from diffuse_uda.pipeline.bench_runs import check_generator_overrides, run_composite, split_overrides
from diffuse_uda.pipeline.experiment import EVALUATION, evaluate_run, run_experiment
from diffuse_uda.pipeline.run import STAGE3, PipelineRecord, read_pipeline_record
from diffuse_uda.pipeline.run_folder import RunFolder, RunManifest
from diffuse_uda.training import distributed

LOWER, UPPER = "source-only", "target-supervised"


def run_bench(task: Task, methods: Sequence[str], seeds: int | Sequence[int], out_dir: Path, profile: str = "quick",
              overrides: dict[str, Any] | None = None, progress: bool = True, force: bool = False) -> Path:
    """Run (or resume) every method x seed; returns the folder holding bench.md/csv/json.

    A finished run in the bench folder is reused only when its method, settings and inputs match;
    one made for anything else stops the bench with the differences, or is redone with ``force``."""
    check_entries(methods)
    check_generator_overrides(list(methods), overrides or {})
    segmentation_overrides, _ = split_overrides(overrides or {})
    task.check()
    out_dir = distributed.on_main(ensure_output_dir, Path(out_dir), "bench folder")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ConfigError("--seeds must be at least 1")
    runs: dict[str, dict[int, Path]] = {}
    pipelines: dict[str, dict[int, Path]] = {}  # the pipeline folder of each Diffuse-UDA run (its timings)
    jobs = [(m, s) for m in methods for s in seed_list]
    for entry, seed in tqdm(jobs, desc=f"bench {task.name}", disable=not (progress and distributed.is_main())):
        if is_composite(entry):
            runs.setdefault(entry, {})[seed] = run_composite(task, entry, seed, out_dir, profile, overrides or {},
                                                             progress, force)
            pipelines.setdefault(entry, {})[seed] = out_dir / entry / f"seed{seed}"
            continue
        method, options = resolve_method(entry)
        ov = json.loads(json.dumps(segmentation_overrides))
        ov.setdefault("training", {})["seed"] = seed
        ov["method"] = {**options, **ov.get("method", {})}
        config = build_run_config(profile, task.preprocessing.spatial_dims, ov)
        # ascplus's appearance candidates are the bench's ascplus-<preset> rows: trained once, shared.
        candidates = bench_candidate_dirs(out_dir, seed)
        run_dir, _ = run_experiment(task, method, config, out_dir / entry / f"seed{seed}", progress=progress,
                                    force=force, candidate_dirs=candidates if method == "ascplus" else None)
        choice = read_choice(run_dir)
        if choice is not None:
            # After training, for the report only: score every candidate on the test split, so the table
            # can show which one the test labels would have picked. Nothing is chosen from this.
            ptask = task.with_preprocessing(config.preprocessing)
            for candidate in choice.candidates.values():
                evaluate_run(Path(candidate), ptask, progress=progress)
        runs.setdefault(entry, {})[seed] = run_dir
    return distributed.on_main(write_bench_table, task, runs, out_dir, pipelines)


def _seed_means(per_case: dict[str, dict[str, dict[str, float]]], classes: list[str],
                metric: str) -> dict[str, float]:
    """Per class (and 'mean') average over the cases of one run's per_case.csv."""
    out: dict[str, float] = {}
    for c in classes:
        vals = [v[c][metric] for v in per_case.values() if c in v and not math.isnan(v[c][metric])]
        out[c] = sum(vals) / len(vals) if vals else math.nan
    case_means = []
    for v in per_case.values():
        vals = [v[c][metric] for c in classes if c in v]
        case_means.append(math.nan if any(math.isnan(x) for x in vals) else sum(vals) / len(vals))
    finite = [x for x in case_means if not math.isnan(x)]
    out["mean"] = sum(finite) / len(finite) if finite else math.nan
    return out


def _pipeline_record(run_dir: Path, pipeline_dir: Path | None = None) -> PipelineRecord | None:
    """The pipeline record of a Diffuse-UDA entry's model (``pipeline_dir``: its pipeline folder, needed where the
    model is stage 1's own folder because the synthetic check skipped stage 3), else None."""
    if pipeline_dir is not None:
        return read_pipeline_record(pipeline_dir)
    return read_pipeline_record(run_dir.parent) if run_dir.name == STAGE3 else None


def _run_seconds(run_dir: Path, manifest: RunManifest, pipeline_dir: Path | None = None) -> float:
    """Training time of a run; for a Diffuse-UDA pipeline, the sum of all its stages."""
    record = _pipeline_record(run_dir, pipeline_dir)
    if record is not None:
        return math.nan if record.total_seconds is None else record.total_seconds
    return math.nan if manifest.train_seconds is None else manifest.train_seconds


def _stage_seconds(run_dirs: dict[int, Path], pipeline_dirs: dict[int, Path]) -> dict[str, tuple[float, float]] | None:
    """Wall time per stage (mean ± std over seeds) of a Diffuse-UDA pipeline entry, else None."""
    per_stage: dict[str, list[float]] = {}
    for seed, run in run_dirs.items():
        record = _pipeline_record(run, pipeline_dirs.get(seed))
        if record is None:
            return None
        for st in record.stages:
            if st.seconds is not None:
                per_stage.setdefault(st.stage, []).append(st.seconds)
    return {stage: mean_std(v) for stage, v in per_stage.items()}


def _case_scores(run_dirs: dict[int, Path], classes: list[str]) -> dict[str, float]:
    """Mean-foreground Dice per case, averaged over seeds (for the paired test)."""
    acc: dict[str, list[float]] = {}
    for run in run_dirs.values():
        for case, v in load_per_case(run / EVALUATION / "per_case.csv").items():
            acc.setdefault(case, []).append(sum(v[c]["dice"] for c in classes) / len(classes))
    return {case: sum(x) / len(x) for case, x in acc.items()}


def _appearance_choices(runs: dict[str, dict[int, Path]], classes: list[str],
                        entry: str = "ascplus") -> list[dict[str, Any]]:
    """Per seed of an ascplus row: the label-free pick, its scores and (post hoc) each candidate's test Dice."""
    out = []
    for seed, run in sorted(runs.get(entry, {}).items()):
        choice = read_choice(run)
        if choice is None:
            continue
        test_dice = {}
        for name, candidate in choice.candidates.items():
            per_case = Path(candidate) / EVALUATION / "per_case.csv"
            if not per_case.is_file():  # a copy of the bench (benchmarks/results): the candidate row beside it
                per_case = run.parent.parent / f"ascplus-{name}" / run.name / EVALUATION / "per_case.csv"
            test_dice[name] = _seed_means(load_per_case(per_case), classes, "dice")["mean"] if per_case.is_file() \
                else math.nan
        finite = {n: d for n, d in test_dice.items() if not math.isnan(d)}
        pick = max(finite, key=finite.get) if finite else "n/a"
        given_up = finite[pick] - finite.get(choice.chosen, math.nan) if finite else math.nan
        agreed = agreement_pick(choice)
        out.append({"seed": seed, "chosen": choice.chosen, "rule": choice.rule, "scores": choice.scores,
                    "entropy": choice.entropy, "agreement_pick": agreed,
                    "agreement_given_up": finite[pick] - finite.get(agreed, math.nan) if finite else math.nan,
                    "test_dice": test_dice, "test_pick": pick, "given_up": given_up,
                    "guard": ({"challenger": choice.class_ratio_challenger, "support": choice.class_ratio_support,
                               **({"floor": choice.class_ratio_floor} if choice.class_ratio_floor is not None else {})}
                              if choice.class_ratio_support is not None else None)})
    return out


def write_bench_table(task: Task, runs: dict[str, dict[int, Path]], out_dir: Path,
                      pipelines: dict[str, dict[int, Path]] | None = None) -> Path:
    """bench.md/csv/json from evaluated runs (entry -> seed -> run folder); ``pipelines``: the pipeline folder of
    each Diffuse-UDA entry's seed, where its timings are read (default: the stage-3 folder's parent)."""
    classes = [n for n, v in sorted(task.labels.items(), key=lambda kv: kv[1]) if v != 0]
    rows: list[dict[str, Any]] = []
    for entry, seed_runs in runs.items():
        manifests = [RunFolder(r).manifest() for r in seed_runs.values()]
        row: dict[str, Any] = {"method": entry, "oracle": any(m.oracle for m in manifests),
                               "seeds": len(seed_runs)}
        per_case = [load_per_case(r / EVALUATION / "per_case.csv") for r in seed_runs.values()]
        for metric in ("dice", "hd95", "assd"):
            per_seed = [_seed_means(pc, classes, metric) for pc in per_case]
            for c in [*classes, "mean"]:
                values = [s[c] for s in per_seed]
                row[f"{metric}_{c}"] = mean_std(values)
                row[f"{metric}_{c}_seeds"] = sum(not math.isnan(v) for v in values)
        folders = (pipelines or {}).get(entry, {})
        row["train_seconds"] = mean_std([_run_seconds(r, m, folders.get(seed))
                                         for (seed, r), m in zip(seed_runs.items(), manifests, strict=True)])
        row["peak_rss_mb"] = max(math.nan if m.peak_rss_mb is None else m.peak_rss_mb for m in manifests)
        row["stage_seconds"] = _stage_seconds(seed_runs, folders)
        rows.append(row)
    by_method = {r["method"]: r for r in rows}
    lower = by_method.get(LOWER, {}).get("dice_mean", (math.nan,))[0]
    upper = by_method.get(UPPER, {}).get("dice_mean", (math.nan,))[0]
    for r in rows:
        # The fraction of the gap is meaningless when the oracle is not above the lower bound.
        r["gap_closed"] = gap_closed(r["dice_mean"][0], lower, upper) if upper > lower else math.nan
    # Paired significance: best vs second-best non-oracle method, Wilcoxon over test cases.
    ranked = sorted((r for r in rows if not r["oracle"]), key=lambda r: -r["dice_mean"][0])
    significance = None
    if len(ranked) >= 2:
        a, b = ranked[0]["method"], ranked[1]["method"]
        scores_a, scores_b = _case_scores(runs[a], classes), _case_scores(runs[b], classes)
        significance = {"best": a, "second": b, "p_value": wilcoxon_paired(scores_a, scores_b)}
        groups = load_dataset_json(task.target_dir).case_groups
        if groups:  # frames of one sequence (slices of one patient) are not independent: each group counts once
            means_a, means_b = group_means(scores_a, groups), group_means(scores_b, groups)
            significance.update(n_cases=len(set(scores_a) & set(scores_b)), n_groups=len(set(means_a) & set(means_b)),
                                p_value_groups=wilcoxon_paired(means_a, means_b))

    def fmt(ms: tuple[float, float], scale: float = 1.0, d: int = 1, seeds: int = 2,
            defined: int | None = None) -> str:
        if math.isnan(ms[0]):
            return "n/a"
        # One seed has no spread to show.
        text = f"{ms[0] * scale:.{d}f}" if seeds < 2 else f"{ms[0] * scale:.{d}f} ± {ms[1] * scale:.{d}f}"
        # A distance is undefined for a seed that missed a class in every case: a mean over the other
        # seeds alone would look better than the method is, so say how many seeds it covers.
        if defined is not None and defined < seeds:
            text += f" ({defined} of {seeds} seeds)"
        return text

    headers = ["Method", *[f"Dice {c}" for c in classes], "Dice mean", "HD95 mean (mm)", "ASSD mean (mm)",
               "gap closed", "train s", "peak RSS MB", "seeds"]
    table = []
    for r in rows:
        name = f"{r['method']} (oracle, upper bound)" if r["oracle"] else r["method"]
        gap = "n/a" if math.isnan(r["gap_closed"]) else f"{100 * r['gap_closed']:.0f}%"
        n = r["seeds"]
        table.append([name, *[fmt(r[f"dice_{c}"], 100, seeds=n) for c in classes], fmt(r["dice_mean"], 100, seeds=n),
                      fmt(r["hd95_mean"], seeds=n, defined=r["hd95_mean_seeds"]),
                      fmt(r["assd_mean"], seeds=n, defined=r["assd_mean_seeds"]), gap,
                      fmt(r["train_seconds"], d=0, seeds=n), f"{r['peak_rss_mb']:.0f}", n])
    md = [f"# bench: {task.name}", "",
          "Target-test Dice (%) per class, mean ± std over seeds (each seed: mean over test cases). "
          "Gap closed = (method - source-only) / (oracle - source-only); n/a when the oracle is not above "
          "source-only. HD95 / ASSD: undefined for a case where a class is in the prediction or the "
          "reference but not in both; such cases are left out, and a cell says when its mean covers "
          "fewer seeds than the row has. Peak RSS: maximum resident memory of the bench process by the end of the run "
          "(the process runs methods in sequence, so it is an upper bound for the run). Train s of "
          "diffuse-uda rows: all pipeline stages (stage 1 included, also when reused from the ascplus row); "
          "of heal rows: the source-only generator plus the adaptation.", "",
          "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    md += ["| " + " | ".join(str(x) for x in row) + " |" for row in table]
    staged = [r for r in rows if r["stage_seconds"]]
    if staged:
        stages = list(dict.fromkeys(st for r in staged for st in r["stage_seconds"]))
        md += ["", "Wall time per pipeline stage (s; stage 1 is the ascplus row's run when reused):", "",
               "| Method | " + " | ".join(stages) + " |", "|" + "---|" * (len(stages) + 1)]
        md += ["| " + " | ".join([r["method"], *(fmt(r["stage_seconds"][st], d=0, seeds=r["seeds"])
                                                   if st in r["stage_seconds"] else "n/a" for st in stages)]) + " |"
               for r in staged]
    # One table per row with its own choice (a row that only adds self-training to another's choice is not
    # repeated).
    all_choices = {entry: c for entry in runs if (c := _appearance_choices(runs, classes, entry))}
    shown: list[list[tuple[int, str, str]]] = []
    for entry, choices in all_choices.items():
        key = [(c["seed"], c["chosen"], c["rule"]) for c in choices]
        if key in shown:
            continue
        shown.append(key)
        if not any(c["scores"] for c in choices):  # one candidate (colour photos since rule U): nothing to compare
            picks = ", ".join(dict.fromkeys(c["chosen"] for c in choices))
            md += ["", f"Appearance transfer of `{entry}`: {picks} at every seed "
                       f"({'; '.join(dict.fromkeys(c['rule'] for c in choices))})."]
            continue
        # Every candidate, also one the rule does not score (class-ratio: histogram matching).
        names = list(dict.fromkeys(n for c in choices for n in [*c["scores"], *c["test_dice"]]))
        rules = "; ".join(dict.fromkeys(c["rule"] for c in choices))
        # Under another rule, the agreement rule's pick is shown beside it.
        other = any(c["rule"] != RULES["agreement"] for c in choices)
        md += ["", f"Appearance transfer of `{entry}`, chosen per seed without labels (rule: {rules})."
                   + (" The agreement rule's pick is shown beside it." if other else "")
                   + " Post hoc, for this table only: each candidate's target-test Dice (%) and the candidate the "
                   "test labels would have picked.", "",
               "| seed | chosen | " + " | ".join(f"{n} (score / test Dice)" for n in names)
               + " | test-label pick | Dice given up |" + (" agreement pick | its Dice given up |" if other else ""),
               "|" + "---|" * (len(names) + (6 if other else 4))]
        for c in choices:
            cells = [((f"{c['scores'][n]:.3f}" if n in c["scores"] else "not scored")
                      + f" / {100 * c['test_dice'][n]:.1f}") if n in c["test_dice"] else "n/a" for n in names]
            guard = c.get("guard")  # the guarded rule: the prior's challenger and its bootstrap support
            chosen = c["chosen"] + (f" (challenger {guard['challenger']}, support {guard['support']:.2f})"
                                    if guard else "")
            md.append(f"| {c['seed']} | {chosen} | " + " | ".join(cells) +
                      f" | {c['test_pick']} | {100 * c['given_up']:.1f} |" +
                      (f" {c['agreement_pick']} | {100 * c['agreement_given_up']:.1f} |" if other else ""))
    if significance:
        md += ["", f"Wilcoxon signed-rank over test cases (mean-foreground Dice averaged over seeds), "
                   f"{significance['best']} vs {significance['second']}: p = {significance['p_value']:.3g}"
                   + (f" over {significance['n_cases']} cases; over the {significance['n_groups']} case groups the "
                      f"target dataset declares (case_groups: sequences or patients, each averaged first): p = "
                      f"{significance['p_value_groups']:.3g}" if "p_value_groups" in significance else "")]
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "bench.md", "\n".join(md) + "\n")
    buf = io.StringIO()
    csv.writer(buf).writerows([headers, *table])
    atomic_write_text(out_dir / "bench.csv", buf.getvalue())
    atomic_write_json(out_dir / "bench.json", {"task": task.name, "rows": rows, "significance": significance,
                                               "appearance_choice": all_choices.get("ascplus", []),
                                               "appearance_choices": all_choices,
                                               "runs": {m: {str(s): str(p) for s, p in r.items()}
                                                        for m, r in runs.items()}})
    return out_dir
