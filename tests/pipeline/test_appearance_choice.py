"""The label-free choice of ASCPlus's appearance transfer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffuse_uda.config import build_run_config
from diffuse_uda.methods.asc import (
    APPEARANCE_PRESETS,
    GREY_CANDIDATES,
    PHOTO_CANDIDATES,
    RGB_CANDIDATES,
    default_candidates,
)
from diffuse_uda.pipeline.appearance_choice import (
    CHOICE_FILE,
    SINGLE_CANDIDATE,
    candidate_config,
    longer_config,
    pooled_dice,
    read_choice,
)
from diffuse_uda.pipeline.run_folder import RunFolder
from diffuse_uda.pipeline.train import train_method
from diffuse_uda.training.bundle import load_bundle

PHOTO_LONGER = 2  # rule U (session 30): the photo candidate is trained for twice the updates


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
    """Rule U (session 30): colour photos are neither restyled nor CutMix-ed; scans choose among the grey set."""
    assert default_candidates(False) == GREY_CANDIDATES and default_candidates(True) == PHOTO_CANDIDATES
    assert PHOTO_CANDIDATES == ("identity-no-structure",)
    assert APPEARANCE_PRESETS["identity-no-structure"] == {"appearance": "identity", "structure": False}
    assert candidate_config(build_run_config("smoke", 2), "identity-no-structure").method["structure"] is False
    assert set(RGB_CANDIDATES) | set(GREY_CANDIDATES) <= set(APPEARANCE_PRESETS)
    cfg = build_run_config("smoke", 2, {"method": {"appearance_candidates": ["paper", "bezier"], "beta": 0.2}})
    bezier = candidate_config(cfg, "bezier")
    assert bezier.method == {"beta": 0.2, **APPEARANCE_PRESETS["bezier"]}


def test_a_run_with_a_fixed_transfer_is_the_same_run_whatever_choice_options_it_was_given(tiny_task) -> None:
    from diffuse_uda.pipeline.train import run_request

    def request(method: dict) -> dict:
        return run_request(tiny_task, "ascplus", build_run_config("smoke", 2, {"method": method})).model_dump()

    gin = APPEARANCE_PRESETS["gin"]
    assert request(gin) == request({**gin, "appearance_candidates": ["paper", "gin"], "appearance_rule": "class-ratio"})
    # With the choice left to the rule (appearance auto), the candidate set is what the run is.
    with_gin, with_bezier = ({"appearance_candidates": ["paper", c]} for c in ("gin", "bezier"))
    assert request(with_gin) != request(with_bezier)


def test_ascplus_auto_trains_candidates_and_keeps_the_most_agreed_one(tiny_task, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    cfg = build_run_config("smoke", 2, {"training": {"iterations": 3, "device": "cpu"},
                                        "method": {"appearance_candidates": ["paper", "bezier", "gin"],
                                                   "appearance_rule": "agreement"}})
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


@pytest.mark.parametrize("longer", [0, 2])
def test_one_candidate_is_kept_unscored_and_not_trained_twice(tiny_task, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch, longer: int) -> None:
    """The colour-photo default (rule U): one candidate, so nothing is scored; trained again for longer, it is not
    first trained at the candidates' length."""
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    cfg = build_run_config("smoke", 2, {"training": {"iterations": 3, "device": "cpu"},
                                        "method": {"appearance_candidates": ["identity"], "longer_training": longer,
                                                   "self_training_rounds": 0}})
    shared = {"identity": tmp_path / "bench" / "ascplus-identity" / "seed0"}
    out = train_method(tiny_task, "ascplus", cfg, tmp_path / "bench" / "ascplus" / "seed0", progress=False,
                       candidate_dirs=shared)
    choice = read_choice(out)
    assert choice is not None and choice.chosen == "identity" and choice.rule == SINGLE_CANDIDATE
    assert choice.scores == {} and choice.agreement == {}
    assert (shared["identity"] / "model.pt").is_file() == (longer == 0)
    assert set(choice.candidates) == ({"identity"} if longer == 0 else set())
    bundle = load_bundle(out)
    assert bundle.run_config.method == candidate_config(cfg, "identity").method
    assert bundle.run_config.training.iterations == 3 * max(1, longer)
    assert RunFolder(out).manifest().details["longer_training"] == longer


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


def test_bench_on_a_colour_photo_task_trains_the_one_photo_candidate_for_longer(tiny_task, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule U through the bench: the ascplus row of a colour-photo task is the photo preset at twice the updates (the
    same run as its bench row at those updates), with nothing scored and the table still written."""
    import json

    from diffuse_uda.data.task import Task
    from diffuse_uda.pipeline.bench import run_bench

    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(Task, "is_colour_photo", property(lambda self: True))
    out = run_bench(tiny_task, ["ascplus"], 1, tmp_path / "bench", profile="smoke",
                    overrides={"training": {"iterations": 2, "device": "cpu"}}, progress=False)
    run = out / "ascplus" / "seed0"
    assert not (out / "ascplus-identity-no-structure").exists()  # not trained at the candidates' length
    bundle = load_bundle(run)
    assert bundle.run_config.training.iterations == 4
    assert bundle.run_config.method == APPEARANCE_PRESETS["identity-no-structure"]
    (entry,) = json.loads((out / "bench.json").read_text())["appearance_choice"]
    assert entry["chosen"] == "identity-no-structure" and entry["rule"] == SINGLE_CANDIDATE
    assert entry["test_dice"] == {}
    assert "Appearance transfer of `ascplus`: identity-no-structure at every seed" in (out / "bench.md").read_text()


def test_choice_options_are_not_candidate_options() -> None:
    # A candidate made for one candidate set is the same run in another (session 15: a new set could not reuse
    # the finished candidate rows while the set itself was left in each candidate's settings).
    cfg = build_run_config("smoke", 2, {"method": {"appearance_rule": "agreement", "reverse_fraction": 0.5,
                                                   "appearance_candidates": ["paper", "gin"],
                                                   "self_training_rounds": 1}})
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
    agreed = appearance_choice.score_candidates(runs, tiny_task, None, "cpu", rule="agreement")
    assert agreed.chosen == "a" and appearance_choice.agreement_pick(agreed) == "a"
    reverse = appearance_choice.score_candidates(runs, tiny_task, None, "cpu", rule="reverse-validation",
                                                 reverse={"a": 0.1, "b": 0.2, "c": 0.5})
    assert reverse.chosen == "c" and reverse.rule == appearance_choice.RULES["reverse-validation"]
    assert appearance_choice.agreement_pick(reverse) == "a"  # the other rule's pick stays on record
    with pytest.raises(ConfigError, match="reverse-validation score for every candidate"):
        appearance_choice.score_candidates(runs, tiny_task, None, "cpu", rule="reverse-validation",
                                           reverse={"a": 0.1})


def test_class_ratio_kl_compares_foreground_shares_only() -> None:
    from diffuse_uda.pipeline.appearance_choice import class_ratio_kl, foreground_proportions

    maps = torch.tensor([[0, 0, 0, 1, 2, 2]])
    assert foreground_proportions(maps, [1, 2]).tolist() == pytest.approx([1 / 3, 2 / 3])
    # More background (another field of view) leaves the shares, so the divergence, unchanged.
    wider = torch.cat([maps, torch.zeros(1, 30, dtype=torch.long)], 1)
    assert foreground_proportions(wider, [1, 2]).tolist() == pytest.approx([1 / 3, 2 / 3])
    assert class_ratio_kl(foreground_proportions(maps, [1, 2]), foreground_proportions(wider, [1, 2])) \
        == pytest.approx(0.0, abs=1e-9)
    swapped = class_ratio_kl(foreground_proportions(maps, [1, 2]), foreground_proportions(3 - maps, [1, 2]))
    missing = class_ratio_kl(foreground_proportions(maps, [1, 2]), foreground_proportions(maps.clamp(0, 1), [1, 2]))
    assert 0.0 < swapped < missing < float("inf")  # a class left out costs most, and stays finite
    assert foreground_proportions(torch.zeros(1, 4, dtype=torch.long), [1, 2]).tolist() == [0.0, 0.0]


def test_class_ratio_rule_prefers_the_source_proportions(tiny_task, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake candidates built from the true target labels (read here by the test, never by the product): right,
    with CSF and WM swapped (the error of a transfer that keeps the source's intensity order), and with WM
    labelled GM. The rule reads the *source* labels and picks the right one; agreement is recorded beside it."""
    from diffuse_uda.data.preprocessing import prepare_split, stack_samples
    from diffuse_uda.pipeline import appearance_choice

    cases = prepare_split(tiny_task.target_dir, "Tr", tiny_task.preprocessing, with_labels=True)
    _, truth = stack_samples(cases, 2)
    swapped = truth.clone()
    swapped[truth == 1], swapped[truth == 3] = 3, 1
    # Histogram matching reproduces the source's proportions by construction: recorded, never scored, even
    # when its proportions are the closest (here: those of the source labels themselves).
    from diffuse_uda.data.preprocessing import prepare_split as _prepare

    _, source_truth = stack_samples(_prepare(tiny_task.source_dir, "Tr", tiny_task.preprocessing, True), 2)
    # Candidates are presets (the rule reads each one's transfer); here "bezier" is right, "paper" swapped,
    # "gin" merged.
    maps = {"histogram-matching": source_truth, "paper": swapped, "gin": torch.where(truth == 3, 2, truth),
            "bezier": truth}
    monkeypatch.setattr(appearance_choice, "_run_label_maps", lambda run, *a: (maps[Path(run).name], 0.0))
    runs = {n: tmp_path / n for n in maps}
    choice = appearance_choice.score_candidates(runs, tiny_task, None, "cpu", rule="class-ratio")
    assert choice.chosen == "bezier" and choice.rule == appearance_choice.RULES["class-ratio"]
    kl = choice.class_ratio_kl
    assert kl is not None and kl["histogram-matching"] < kl["bezier"] < kl["paper"]
    assert choice.scores == {n: -v for n, v in kl.items() if n != "histogram-matching"}
    assert set(choice.source_class_ratio or {}) == {"CSF", "GM", "WM"}
    assert sum((choice.source_class_ratio or {}).values()) == pytest.approx(1.0)
    assert choice.agreement_scores is not None and set(choice.agreement_scores) == set(maps)
    assert "class_ratio_kl" in appearance_choice.choice_summary(choice)


def test_class_ratio_blindness_is_a_property_of_the_transfer() -> None:
    """The presets the prior cannot judge are read from their transfers, not listed by name: histogram matching,
    and any mixture that can draw it; the paper's swap, the random remaps and the default mixture are judged."""
    from diffuse_uda.methods.asc import APPEARANCE_PRESETS
    from diffuse_uda.pipeline.appearance_choice import class_ratio_blind
    from diffuse_uda.transforms.appearance import build_appearance_transfer

    assert [n for n in APPEARANCE_PRESETS if class_ratio_blind(n)] == ["histogram-matching"]
    with_matching = build_appearance_transfer("random-choice", {"members": ["bezier", "histogram-matching"]})
    assert with_matching.matches_reference_distribution
    never_drawn = build_appearance_transfer("random-choice", {"members": ["bezier", "histogram-matching"],
                                                              "probabilities": [1.0, 0.0]})
    assert not never_drawn.matches_reference_distribution


def test_class_ratio_rule_with_one_foreground_class_lets_agreement_decide(tiny_task, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from diffuse_uda.data.task import Task, TaskConfig
    from diffuse_uda.pipeline import appearance_choice

    config = tiny_task.config.model_copy(update={"labels": {"background": 0, "CSF": 1}})
    binary = Task(TaskConfig.model_validate(config.model_dump()), tiny_task.source_dir, tiny_task.target_dir)
    images = appearance_choice.target_training_images(binary, None)
    shape = (images.shape[0], *images.shape[2:])
    ones, half = torch.ones(shape, dtype=torch.long), torch.zeros(shape, dtype=torch.long)
    half[..., : shape[-1] // 2] = 1
    maps = {"a": half, "b": ones, "c": ones}
    monkeypatch.setattr(appearance_choice, "_run_label_maps", lambda run, *a: (maps[Path(run).name], 0.0))
    choice = appearance_choice.score_candidates({n: tmp_path / n for n in maps}, binary, None, "cpu",
                                                rule="class-ratio")
    assert choice.chosen == "b" and choice.rule == appearance_choice.CLASS_RATIO_FALLBACK
    assert choice.class_ratio_kl is None and choice.scores == choice.agreement_scores


def test_self_training_needs_the_appearance_choice() -> None:
    from diffuse_uda.errors import ConfigError
    from diffuse_uda.methods.registry import create_method

    assert create_method("ascplus", {"self_training_rounds": 1}).options.self_training_rounds == 1
    with pytest.raises((ConfigError, ValueError), match="self_training_rounds follows the appearance choice"):
        create_method("ascplus", {"self_training_rounds": 1, "appearance": "bezier"})


def test_two_self_training_rounds_by_default_on_scans_none_on_photos() -> None:
    """Rules L and M (sessions 22-23): unset, the rounds follow the task, in the pipeline's stage 1 too (rule R,
    session 28)."""
    from diffuse_uda.methods.asc import default_self_training_rounds
    from diffuse_uda.methods.registry import create_method
    from diffuse_uda.pipeline.run import PipelineConfig, segmentation_config

    assert create_method("ascplus", {}).options.self_training_rounds is None
    assert default_self_training_rounds(colour_photo=False) == 2
    assert default_self_training_rounds(colour_photo=True) == 0
    assert "self_training_rounds" not in segmentation_config(PipelineConfig(), 2).method
    asked = PipelineConfig(segmentation={"method": {"self_training_rounds": 0}})
    assert segmentation_config(asked, 2).method["self_training_rounds"] == 0
    assert segmentation_config(PipelineConfig(seed=3), 2).training.seed == 3


def test_longer_training_follows_the_task_by_default() -> None:
    """Rule Q (session 27): unset, the chosen candidate is trained again for twice the updates on scans (on photos too
    since rule U, session 30), in the pipeline's stage 1 too (rule R, session 28). It follows the choice and must add
    updates."""
    from diffuse_uda.errors import ConfigError
    from diffuse_uda.methods.asc import default_longer_training
    from diffuse_uda.methods.registry import create_method
    from diffuse_uda.pipeline.run import PipelineConfig, segmentation_config

    assert create_method("ascplus", {}).options.longer_training is None
    assert default_longer_training(colour_photo=False) == 2
    assert default_longer_training(colour_photo=True) == PHOTO_LONGER
    assert "longer_training" not in segmentation_config(PipelineConfig(), 2).method
    asked = PipelineConfig(segmentation={"method": {"longer_training": 0}})
    assert segmentation_config(asked, 2).method["longer_training"] == 0
    assert create_method("ascplus", {"longer_training": 2}).options.longer_training == 2
    with pytest.raises((ConfigError, ValueError), match="longer_training follows the appearance choice"):
        create_method("ascplus", {"longer_training": 2, "appearance": "bezier"})
    with pytest.raises((ConfigError, ValueError), match="longer_training=1"):
        create_method("ascplus", {"longer_training": 1})


def test_longer_config_is_the_candidate_row_at_more_updates() -> None:
    cfg = build_run_config("smoke", 2, {"training": {"iterations": 30}, "method": {"longer_training": 2}})
    longer = longer_config(cfg, "gin", 2)
    assert longer.training.iterations == 60 and longer.method == APPEARANCE_PRESETS["gin"]
    assert longer == candidate_config(build_run_config("smoke", 2, {"training": {"iterations": 60}}), "gin")


def test_the_request_records_the_rounds_the_task_gets(tiny_task, monkeypatch) -> None:
    """Unset rounds are resolved in the run request: a folder made while the default meant another number of rounds
    is not taken for today's default run; a fixed transfer (no choice, no rounds) is unaffected."""
    from diffuse_uda.data.task import Task
    from diffuse_uda.pipeline.train import run_request

    def request(method: dict):
        return run_request(tiny_task, "ascplus", build_run_config("smoke", 2, {"method": method}))

    default = request({})
    assert default.options["self_training_rounds"] == 2 and default.config["method"]["self_training_rounds"] == 2
    assert default == request({"self_training_rounds": 2})
    assert default.differences(request({"self_training_rounds": 1}))  # a run of session 22's default
    made_unresolved = default.model_copy(update={
        "options": {**default.options, "self_training_rounds": None},
        "config": {**default.config, "method": {}}})
    assert default.differences(made_unresolved)
    assert request({"self_training_rounds": 0}).options["self_training_rounds"] == 0
    assert default.options["longer_training"] == 2 and default == request({"longer_training": 2})
    # A run made before rule Q (no longer training: the option absent or 0) is not today's default run.
    before_the_option = default.model_copy(update={
        "options": {k: v for k, v in default.options.items() if k != "longer_training"}})
    assert default.differences(before_the_option.upgraded())
    assert default.differences(request({"longer_training": 0}))
    assert "self_training_rounds" not in request({"appearance": "bezier"}).options
    # The candidate set is resolved too: a photo run made with session 29's set is not today's photo default.
    assert default.options["appearance_candidates"] == list(GREY_CANDIDATES)
    monkeypatch.setattr(Task, "is_colour_photo", property(lambda self: True))
    photo = request({})
    assert photo.options["self_training_rounds"] == 0 and photo.options["longer_training"] == PHOTO_LONGER
    assert photo.options["appearance_candidates"] == ["identity-no-structure"]
    assert photo.differences(request({"appearance_candidates": list(RGB_CANDIDATES)}))


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


def test_class_ratio_support_counts_bootstrap_wins_over_cases() -> None:
    from diffuse_uda.pipeline.appearance_choice import class_ratio_support

    reference = np.array([0.5, 0.5])
    right = np.array([[10.0, 10.0], [20.0, 20.0], [5.0, 5.0], [8.0, 8.0]])
    off = np.array([[10.0, 30.0], [20.0, 60.0], [5.0, 15.0], [8.0, 24.0]])
    assert class_ratio_support(reference, off, right) == 1.0  # closer in every case: every resample
    assert class_ratio_support(reference, right, off) == 0.0
    assert class_ratio_support(reference, right, right.copy()) == 0.0  # a tie never overrules
    # Closer when pooled, but only through one large case that outweighs the others: not a clear preference.
    lucky = np.array([[10.0, 40.0], [80.0, 10.0], [10.0, 40.0], [10.0, 40.0]])
    steady = np.array([[20.0, 30.0], [20.0, 30.0], [20.0, 30.0], [20.0, 30.0]])
    pooled = lucky.sum(0) / lucky.sum(), steady.sum(0) / steady.sum()
    assert abs(pooled[0][0] - 0.5) < abs(pooled[1][0] - 0.5)
    assert 0.2 < class_ratio_support(reference, steady, lucky) < 0.95
    assert class_ratio_support(reference, steady, lucky, seed=1) == pytest.approx(
        class_ratio_support(reference, steady, lucky, seed=1))  # one seed, one answer
    with pytest.raises(ValueError, match="same, non-empty set of cases"):
        class_ratio_support(reference, right, right[:2])


def test_case_class_counts_split_samples_by_case() -> None:
    from diffuse_uda.pipeline.appearance_choice import case_class_counts

    maps = torch.tensor([[1, 1], [2, 0], [2, 2]])  # three samples: case 0 has two, case 1 one
    assert case_class_counts(maps, [2, 1], [1, 2]).tolist() == [[2.0, 1.0], [0.0, 2.0]]


def test_class_ratio_floor_grows_with_the_spread_of_the_source_patients() -> None:
    """The noise floor is how far a set of source patients strays from the source's pooled proportions: zero when
    every patient has the same proportions, larger when patients differ and when fewer are drawn."""
    from diffuse_uda.pipeline.appearance_choice import class_ratio_floor

    alike = np.array([[10.0, 20.0], [5.0, 10.0], [30.0, 60.0], [1.0, 2.0]])
    assert class_ratio_floor(alike, 3) == pytest.approx(0.0, abs=1e-9)
    rng = np.random.default_rng(0)
    spread = np.stack([rng.uniform(5, 15, 40), rng.uniform(5, 15, 40)], 1)
    wider = np.stack([rng.uniform(1, 19, 40), rng.uniform(1, 19, 40)], 1)
    assert 0.0 < class_ratio_floor(spread, 10) < class_ratio_floor(wider, 10)
    assert class_ratio_floor(wider, 40) < class_ratio_floor(wider, 5)  # more target cases: a tighter floor
    assert class_ratio_floor(wider, 10) == class_ratio_floor(wider, 10)  # one seed, one answer
    with pytest.raises(ValueError, match="at least one source case"):
        class_ratio_floor(wider[:0], 3)


def _fake_choice(tiny_task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, maps: dict[str, torch.Tensor],
                 support: float | None = None, rule: str = "guarded-class-ratio", floor: float | None = None):
    from diffuse_uda.pipeline import appearance_choice

    monkeypatch.setattr(appearance_choice, "_run_label_maps", lambda run, *a: (maps[Path(run).name], 0.0))
    if support is not None:
        monkeypatch.setattr(appearance_choice, "class_ratio_support", lambda *a, **k: support)
    if floor is not None:
        monkeypatch.setattr(appearance_choice, "class_ratio_floor", lambda *a, **k: floor)
    return appearance_choice.score_candidates({n: tmp_path / n for n in maps}, tiny_task, None, "cpu", rule=rule)


def test_floored_rule_overrules_only_a_pick_beyond_the_source_noise_floor(tiny_task, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule 5: the guarded rule's overrule, and only where agreement's pick strays from the source's proportions
    further than the source's own patients do. Swapped classes stray far beyond the real floor; a floor forced
    above the incumbent's divergence keeps agreement's pick, with the challenger and its support on record."""
    from diffuse_uda.pipeline import appearance_choice

    truth = _target_truth(tiny_task)
    swapped = truth.clone()
    swapped[truth == 1], swapped[truth == 3] = 3, 1
    maps = {"paper": swapped, "gin": swapped.clone(), "mix": swapped.clone(), "bezier": truth}
    choice = _fake_choice(tiny_task, tmp_path, monkeypatch, maps, rule="floored-class-ratio")
    incumbent = appearance_choice.agreement_pick(choice)
    assert choice.rule == appearance_choice.RULES["floored-class-ratio"] and choice.class_ratio_floor is not None
    assert choice.class_ratio_kl is not None and choice.class_ratio_kl[incumbent] > choice.class_ratio_floor
    assert choice.chosen == "bezier"
    assert appearance_choice.choice_summary(choice)["class_ratio_floor"] == pytest.approx(
        choice.class_ratio_floor, abs=1e-5)
    kl_incumbent = choice.class_ratio_kl[incumbent]
    held = _fake_choice(tiny_task, tmp_path, monkeypatch, maps, support=1.0, rule="floored-class-ratio",
                        floor=kl_incumbent * 1.01)
    assert held.chosen == incumbent and held.class_ratio_challenger == "bezier" and held.class_ratio_support == 1.0
    # The session-16 rule has no floor: the same candidates are overruled whatever the floor would be.
    guarded = _fake_choice(tiny_task, tmp_path, monkeypatch, maps, support=1.0, floor=kl_incumbent * 1.01)
    assert guarded.chosen == "bezier" and guarded.class_ratio_floor is None


def test_margin_rule_needs_a_difference_beyond_the_floor_not_bootstrap_support(tiny_task, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule 6: the prior's best candidate overrules agreement when the divergences differ by more than the noise
    floor, even with weak bootstrap support; a difference within the floor keeps agreement's pick even with full
    support."""
    from diffuse_uda.pipeline import appearance_choice

    truth = _target_truth(tiny_task)
    swapped = truth.clone()
    swapped[truth == 1], swapped[truth == 3] = 3, 1
    maps = {"paper": swapped, "gin": swapped.clone(), "mix": swapped.clone(), "bezier": truth}
    weak = _fake_choice(tiny_task, tmp_path, monkeypatch, maps, support=0.5, rule="margin-class-ratio", floor=0.0)
    assert weak.chosen == "bezier" and weak.class_ratio_support == 0.5
    assert weak.rule == appearance_choice.RULES["margin-class-ratio"]
    kl = weak.class_ratio_kl
    assert kl is not None
    margin = kl[appearance_choice.agreement_pick(weak)] - kl["bezier"]
    assert margin > 0
    within = _fake_choice(tiny_task, tmp_path, monkeypatch, maps, support=1.0, rule="margin-class-ratio",
                          floor=margin * 1.01)
    assert within.chosen == appearance_choice.agreement_pick(within) and within.class_ratio_floor == pytest.approx(
        margin * 1.01)
    beyond = _fake_choice(tiny_task, tmp_path, monkeypatch, maps, support=0.0, rule="margin-class-ratio",
                          floor=margin * 0.99)
    assert beyond.chosen == "bezier"


def _target_truth(tiny_task) -> torch.Tensor:
    from diffuse_uda.data.preprocessing import prepare_split, stack_samples

    _, truth = stack_samples(prepare_split(tiny_task.target_dir, "Tr", tiny_task.preprocessing, with_labels=True), 2)
    assert truth is not None
    return truth


def test_guarded_rule_overrules_agreement_only_with_bootstrap_support(tiny_task, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Three candidates fail alike (CSF and WM swapped) and agree; the lone right one wins under the guarded
    rule only when the case bootstrap backs the prior (real bootstrap here, then forced just below / at the
    level). The target labels are read by the test to build the fakes, never by the rule."""
    from diffuse_uda.pipeline import appearance_choice

    truth = _target_truth(tiny_task)
    swapped = truth.clone()
    swapped[truth == 1], swapped[truth == 3] = 3, 1
    maps = {"paper": swapped, "gin": swapped.clone(), "mix": swapped.clone(), "bezier": truth}
    choice = _fake_choice(tiny_task, tmp_path, monkeypatch, maps)
    assert appearance_choice.agreement_pick(choice) in {"paper", "gin", "mix"}
    assert choice.chosen == "bezier" and choice.class_ratio_challenger == "bezier"
    assert choice.class_ratio_support is not None and choice.class_ratio_support >= appearance_choice.GUARD_LEVEL
    assert choice.rule == appearance_choice.RULES["guarded-class-ratio"]
    assert appearance_choice.choice_summary(choice)["class_ratio_support"] == pytest.approx(
        choice.class_ratio_support, abs=1e-3)
    below = _fake_choice(tiny_task, tmp_path, monkeypatch, maps, support=appearance_choice.GUARD_LEVEL - 0.01)
    assert below.chosen == appearance_choice.agreement_pick(below) and below.class_ratio_challenger == "bezier"
    at = _fake_choice(tiny_task, tmp_path, monkeypatch, maps, support=appearance_choice.GUARD_LEVEL)
    assert at.chosen == "bezier"


def test_guarded_rule_keeps_an_agreement_pick_the_prior_cannot_judge(tiny_task, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    truth = _target_truth(tiny_task)
    swapped = truth.clone()
    swapped[truth == 1], swapped[truth == 3] = 3, 1
    maps = {"histogram-matching": swapped, "paper": swapped.clone(), "bezier": truth}
    choice = _fake_choice(tiny_task, tmp_path, monkeypatch, maps, support=1.0)
    assert choice.chosen == "histogram-matching" and choice.class_ratio_support is None
    # When agreement and the prior pick the same candidate, the guard has nothing to test.
    same = _fake_choice(tiny_task, tmp_path, monkeypatch, {"paper": truth, "gin": truth.clone(), "bezier": swapped})
    assert same.chosen in {"paper", "gin"} and same.class_ratio_challenger is None


def test_the_default_rule_is_the_floored_class_ratio_rule(tiny_task, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Since session 21 (rules J and K, committed before their effects were computed, BENCHMARKS.md) `ascplus`
    chooses by agreement overruled by the class-ratio prior where a case bootstrap backs it and agreement's pick
    is beyond the source patients' noise floor; the record says so and keeps the floor."""
    from diffuse_uda.methods.asc import ASCPlusOptions
    from diffuse_uda.pipeline import appearance_choice

    assert ASCPlusOptions().appearance_rule == "floored-class-ratio"
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    cfg = build_run_config("smoke", 2, {"training": {"iterations": 2, "device": "cpu"},
                                        "method": {"appearance_candidates": ["paper", "bezier"]}})
    choice = read_choice(train_method(tiny_task, "ascplus", cfg, tmp_path / "run", progress=False))
    assert choice is not None and choice.rule == appearance_choice.RULES["floored-class-ratio"]
    assert choice.class_ratio_floor is not None
    assert choice.class_ratio_kl is not None and set(choice.class_ratio_kl) == {"paper", "bezier"}
