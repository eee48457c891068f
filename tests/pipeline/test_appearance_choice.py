"""The label-free choice of ASCPlus's appearance transfer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffuse_uda.config import build_run_config
from diffuse_uda.methods.asc import APPEARANCE_PRESETS
from diffuse_uda.pipeline.appearance_choice import (
    CHOICE_FILE,
    GREY_CANDIDATES,
    RGB_CANDIDATES,
    candidate_config,
    default_candidates,
    pooled_dice,
    read_choice,
)
from diffuse_uda.pipeline.run_folder import RunFolder
from diffuse_uda.pipeline.train import train_method
from diffuse_uda.training.bundle import load_bundle


def test_pooled_dice_counts_empty_agreement_as_no_evidence() -> None:
    a = torch.zeros(2, 4, 4, dtype=torch.long)
    b = a.clone()
    a[0, :2, :2] = 1
    b[0, :2, :2] = 1
    assert pooled_dice(a, b, [1]) == 1.0
    assert pooled_dice(a, b, [1, 2]) == 0.5  # class 2 empty in both: 0, not 1
    b[0, :2, :2] = 0
    assert pooled_dice(a, b, [1]) == 0.0


def test_candidate_sets_and_configs() -> None:
    assert default_candidates(1) == GREY_CANDIDATES and default_candidates(3) == RGB_CANDIDATES
    assert set(RGB_CANDIDATES) <= set(APPEARANCE_PRESETS)
    cfg = build_run_config("smoke", 2, {"method": {"appearance_candidates": ["paper", "bezier"], "beta": 0.2}})
    bezier = candidate_config(cfg, "bezier")
    assert bezier.method == {"beta": 0.2, "appearance_candidates": ["paper", "bezier"], **APPEARANCE_PRESETS["bezier"]}


def test_ascplus_auto_trains_candidates_and_keeps_the_most_agreed_one(tiny_task, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    cfg = build_run_config("smoke", 2, {"training": {"iterations": 3, "device": "cpu"},
                                        "method": {"appearance_candidates": ["paper", "bezier", "gin"]}})
    shared = {"bezier": tmp_path / "bench" / "ascplus-bezier" / "seed0"}
    out = train_method(tiny_task, "ascplus", cfg, tmp_path / "bench" / "ascplus" / "seed0", progress=False,
                       candidate_dirs=shared)
    choice = read_choice(out)
    assert choice is not None and set(choice.scores) == {"paper", "bezier", "gin"}
    assert choice.chosen == max(choice.scores, key=choice.scores.get)
    assert (shared["bezier"] / "model.pt").is_file() and (out / "candidates" / "gin" / "model.pt").is_file()
    # The run folder holds the chosen candidate's model, and says which it is.
    bundle = load_bundle(out)
    assert bundle.run_config.method == candidate_config(cfg, choice.chosen).method
    manifest = RunFolder(out).manifest()
    assert manifest.details["appearance"] == choice.chosen and CHOICE_FILE in manifest.outputs
    candidates = [RunFolder(p).manifest().train_seconds for p in choice.candidates.values()]
    assert manifest.train_seconds >= sum(candidates)
    # A rerun reuses everything.
    before = (out / CHOICE_FILE).stat().st_mtime_ns
    train_method(tiny_task, "ascplus", cfg, out, progress=False, candidate_dirs=shared)
    assert (out / CHOICE_FILE).stat().st_mtime_ns == before


def test_auto_with_extra_labelled_data_is_refused(tiny_task, tmp_path: Path) -> None:
    from diffuse_uda.errors import ConfigError

    cfg = build_run_config("smoke", 2, {"training": {"iterations": 2, "device": "cpu"}})
    with pytest.raises(ConfigError, match="appearance 'auto' with extra labelled data"):
        train_method(tiny_task, "ascplus", cfg, tmp_path / "r", extra_labelled=[tiny_task.source_dir], progress=False)


def test_bench_shows_the_label_free_pick_beside_the_test_label_pick(tiny_task, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from diffuse_uda.pipeline.bench import run_bench

    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    out = run_bench(tiny_task, ["ascplus-bezier", "ascplus"], 1, tmp_path / "bench", profile="smoke",
                    overrides={"training": {"iterations": 2, "device": "cpu"},
                               "method": {"appearance_candidates": ["paper", "bezier"]}}, progress=False)
    # The bezier candidate is the bench's own ascplus-bezier row; the paper candidate lives under ascplus.
    assert not (out / "ascplus" / "seed0" / "candidates" / "bezier").exists()
    (entry,) = json.loads((out / "bench.json").read_text())["appearance_choice"]
    assert set(entry["test_dice"]) == {"paper", "bezier"} and entry["test_pick"] in ("paper", "bezier")
    assert entry["given_up"] >= 0
    assert "test-label pick" in (out / "bench.md").read_text()


def test_choice_options_are_not_candidate_options() -> None:
    cfg = build_run_config("smoke", 2, {"method": {"appearance_rule": "agreement", "reverse_fraction": 0.5}})
    assert candidate_config(cfg, "gin").method == APPEARANCE_PRESETS["gin"]


def test_reverse_validation_prefers_pseudo_labels_that_teach_the_source(tiny_task, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Two fake candidates: one whose target pseudo-labels are the true target labels (read here by the test,
    never by the product), one that labels everything background. Only the first can teach a reverse model
    to find the structures on the labelled source images."""
    from diffuse_uda.data.preprocessing import prepare_split, stack_samples
    from diffuse_uda.pipeline import appearance_choice

    cfg = build_run_config("smoke", 2, {"training": {"iterations": 160, "device": "cpu"}})
    cases = prepare_split(tiny_task.target_dir, "Tr", tiny_task.preprocessing, with_labels=True)
    _, truth = stack_samples(cases, 2)
    maps = {"right": truth, "empty": torch.zeros_like(truth)}
    monkeypatch.setattr(appearance_choice, "_run_label_maps", lambda run, *a: (maps[Path(run).name], 0.0))
    runs = {"empty": tmp_path / "empty", "right": tmp_path / "right"}
    scores = appearance_choice.reverse_validation_scores(runs, tiny_task, cfg, tmp_path / "reverse", None,
                                                         fraction=1.0)
    assert scores["empty"][0] == 0.0  # a reverse model taught only background finds no structure
    assert scores["right"][0] > 0.1
    # Each score is kept (not the reverse model) and a rerun reuses it.
    record = tmp_path / "reverse" / "right" / "score.json"
    assert record.is_file() and not (tmp_path / "reverse" / "right" / "checkpoint_last.pt").exists()
    before = record.stat().st_mtime_ns
    assert appearance_choice.reverse_validation_scores(runs, tiny_task, cfg, tmp_path / "reverse", None,
                                                       fraction=1.0) == scores
    assert record.stat().st_mtime_ns == before


def test_the_rule_decides_and_both_picks_are_recorded(tiny_task, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from diffuse_uda.errors import ConfigError
    from diffuse_uda.pipeline import appearance_choice

    images = appearance_choice.target_training_images(tiny_task, None)
    shape = (images.shape[0], *images.shape[2:])
    same = torch.ones(shape, dtype=torch.long)
    maps = {"a": same, "b": same, "c": torch.full(shape, 2, dtype=torch.long)}
    monkeypatch.setattr(appearance_choice, "_run_label_maps", lambda run, *a: (maps[Path(run).name], 0.0))
    runs = {n: tmp_path / n for n in maps}
    agreed = appearance_choice.score_candidates(runs, tiny_task, None, "cpu")
    assert agreed.chosen == "a" and appearance_choice.agreement_pick(agreed) == "a"
    reverse = appearance_choice.score_candidates(runs, tiny_task, None, "cpu", rule="reverse-validation",
                                                 reverse={"a": 0.1, "b": 0.2, "c": 0.5})
    assert reverse.chosen == "c" and reverse.rule == appearance_choice.RULES["reverse-validation"]
    assert appearance_choice.agreement_pick(reverse) == "a"  # the other rule's pick stays on record
    with pytest.raises(ConfigError, match="reverse-validation score for every candidate"):
        appearance_choice.score_candidates(runs, tiny_task, None, "cpu", rule="reverse-validation",
                                           reverse={"a": 0.1})


def test_self_training_needs_the_appearance_choice() -> None:
    from diffuse_uda.errors import ConfigError
    from diffuse_uda.methods.registry import create_method

    assert create_method("ascplus", {"self_training_rounds": 1}).options.self_training_rounds == 1
    with pytest.raises((ConfigError, ValueError), match="self_training_rounds follows the appearance choice"):
        create_method("ascplus", {"self_training_rounds": 1, "appearance": "bezier"})


def test_choice_options_are_not_part_of_a_fixed_transfer_run() -> None:
    """A candidate (fixed transfer) is the same run whatever rule picks among candidates; the auto run is not."""
    from diffuse_uda.methods.registry import create_method

    def dump(options: dict) -> dict:
        return create_method("ascplus", options).options.model_dump(mode="json")

    assert dump({"appearance": "bezier"}) == dump({"appearance": "bezier", "appearance_rule": "reverse-validation",
                                                   "reverse_fraction": 0.5})
    assert "appearance_rule" not in dump({"appearance": "bezier"})
    assert dump({}) != dump({"appearance_rule": "reverse-validation"})
    assert dump({}) != dump({"self_training_rounds": 1})
