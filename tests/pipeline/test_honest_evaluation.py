"""Target labels are read only by evaluation: proven by deleting them and by watching every file read."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import nibabel
import pytest

from diffuse_uda.config import build_run_config
from diffuse_uda.evaluation.evaluate import evaluate_predictions
from diffuse_uda.evaluation.reference import ReferenceLabels
from diffuse_uda.inference.predict import predict_dataset
from diffuse_uda.methods.registry import available_methods
from diffuse_uda.pipeline.appearance_choice import read_choice
from diffuse_uda.pipeline.train import train_method

SRC = Path(__file__).resolve().parents[2] / "src" / "diffuse_uda"
UDA_METHODS = [n for n, cls in available_methods().items() if not cls.uses_target_labels]


@pytest.fixture()
def watched_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    reads: list[Path] = []
    original = nibabel.load

    def load(filename, *args, **kwargs):
        reads.append(Path(filename).resolve())
        return original(filename, *args, **kwargs)

    monkeypatch.setattr(nibabel, "load", load)
    return reads


def _hide_target_labels(task) -> Path:
    """Move every target label folder away; returns where they went."""
    stash = task.target_dir.parent / "stash"
    stash.mkdir()
    for split in ("Tr", "Ts"):
        shutil.move(task.target_dir / f"labels{split}", stash / f"labels{split}")
    return stash


@pytest.mark.parametrize("method", UDA_METHODS)
def test_train_and_predict_never_read_target_labels(method, tiny_task, smoke_config, tmp_path, watched_reads):
    # 1) With the target labels gone, training and prediction still work ...
    stash = _hide_target_labels(tiny_task)
    run = train_method(tiny_task, method, smoke_config, tmp_path / "run", cache_dir=tmp_path / "cache",
                       progress=False)
    preds = predict_dataset(run, tiny_task.target_dir, tmp_path / "pred", split="Ts", device="cpu", progress=False)
    assert len(list(preds.glob("*.nii.gz"))) == 2
    if method == "ascplus":  # the product default: its appearance transfer was chosen without labels
        choice = read_choice(run)
        assert choice is not None and choice.chosen in choice.scores
        # ... and on a scan the default trains the pick again for twice the updates (rule Q), then two
        # self-training rounds on the target pseudo-labels (rules L, M).
        assert (run / "longer_training" / "model.pt").is_file()
        assert (run / "self_training" / "round2" / "model.pt").is_file()
        assert (run / "model.pt").read_bytes() == (run / "self_training" / "round2" / "model.pt").read_bytes()
    # 2) ... no file under a target label folder was even opened ...
    assert watched_reads, "the watcher saw no reads at all"
    assert not [p for p in watched_reads if p.parent.name.startswith("labels") and tiny_task.target_dir.name in str(p)]
    # 3) ... and evaluation is where they are needed (and only there).
    with pytest.raises(Exception, match="labelsTs"):
        ReferenceLabels(tiny_task.target_dir, split="Ts")
    shutil.move(stash / "labelsTs", tiny_task.target_dir / "labelsTs")
    summary = evaluate_predictions(preds, ReferenceLabels(tiny_task.target_dir, "Ts"), tmp_path / "eval",
                                   progress=False)
    assert summary.metadata["n_cases"] == 2


@pytest.mark.parametrize("rule", ["reverse-validation", "class-ratio", "guarded-class-ratio",
                                  "floored-class-ratio", "margin-class-ratio"])
def test_optional_choice_rules_never_read_target_labels(rule, tiny_task, tmp_path, watched_reads):
    """The optional rules read source labels: reverse validation trains reverse models on target *pseudo*-labels
    and scores them on source labels; the class-ratio rule compares predicted target proportions with the
    source labels'. With the target labels gone each still chooses, and opens no target label file."""
    _hide_target_labels(tiny_task)
    cfg = build_run_config("smoke", 2, {"training": {"iterations": 2, "device": "cpu"},
                                        "method": {"appearance_rule": rule,
                                                   "appearance_candidates": ["paper", "bezier"]}})
    run = train_method(tiny_task, "ascplus", cfg, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    choice = read_choice(run)
    scores = choice.reverse_validation if rule == "reverse-validation" else choice.class_ratio_kl
    assert scores is not None and set(scores) == {"paper", "bezier"}
    if rule in ("floored-class-ratio", "margin-class-ratio"):  # the noise floor comes from the source labels
        assert choice.class_ratio_floor is not None and choice.class_ratio_floor >= 0.0
    assert not [p for p in watched_reads if p.parent.name.startswith("labels") and tiny_task.target_dir.name in str(p)]
    assert any(p.parent.name == "labelsTr" and tiny_task.source_dir.name in str(p) for p in watched_reads)


def test_self_training_round_never_reads_target_labels(tiny_task, tmp_path, watched_reads):
    """``ascplus-self-training``: after the label-free choice the chosen model pseudo-labels the target
    training images and ASCPlus trains again with them; no target label file is opened, and the run's
    model is the round's."""
    from diffuse_uda.pipeline.run_folder import RunFolder
    from diffuse_uda.training.bundle import load_bundle

    _hide_target_labels(tiny_task)
    cfg = build_run_config("smoke", 2, {"training": {"iterations": 2, "device": "cpu"},
                                        "method": {"self_training_rounds": 1,
                                                   "appearance_candidates": ["paper", "bezier"]}})
    run = train_method(tiny_task, "ascplus", cfg, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    round1 = run / "self_training" / "round1"
    assert (run / "model.pt").read_bytes() == (round1 / "model.pt").read_bytes()
    manifest = RunFolder(round1).manifest()
    assert manifest.n_labelled_samples > RunFolder(run / "candidates" / "paper").manifest().n_labelled_samples
    assert RunFolder(run).manifest().details["self_training_rounds"] == 1
    assert load_bundle(run).run_config.method == load_bundle(run / "candidates" / read_choice(run).chosen
                                                             ).run_config.method
    assert not [p for p in watched_reads if p.parent.name.startswith("labels") and tiny_task.target_dir.name in str(p)]


def test_longer_training_after_the_choice_never_reads_target_labels(tiny_task, tmp_path, watched_reads):
    """``longer_training`` (an option): after the label-free choice the chosen candidate is trained again from
    scratch for twice the updates, then the round starts from it; no target label file is opened."""
    from diffuse_uda.pipeline.appearance_choice import LONGER_DIR
    from diffuse_uda.pipeline.run_folder import RunFolder

    _hide_target_labels(tiny_task)
    cfg = build_run_config("smoke", 2, {"training": {"iterations": 2, "device": "cpu"},
                                        "method": {"appearance_candidates": ["paper", "bezier"],
                                                   "longer_training": 2, "self_training_rounds": 1}})
    run = train_method(tiny_task, "ascplus", cfg, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    chosen = RunFolder(run / "candidates" / read_choice(run).chosen).manifest()
    assert RunFolder(run / LONGER_DIR).manifest().iterations == 2 * chosen.iterations == 4
    round1 = run / "self_training" / "round1"
    assert (run / "model.pt").read_bytes() == (round1 / "model.pt").read_bytes()
    details = RunFolder(run).manifest().details
    assert details["longer_training"] == 2 and details["self_training_rounds"] == 1
    assert not [p for p in watched_reads if p.parent.name.startswith("labels") and tiny_task.target_dir.name in str(p)]


def test_oracle_reads_only_target_training_labels(tiny_task, smoke_config, tmp_path, watched_reads):
    shutil.rmtree(tiny_task.target_dir / "labelsTs")
    train_method(tiny_task, "target-supervised", smoke_config, tmp_path / "run", cache_dir=tmp_path / "c",
                 progress=False)
    assert any(p.parent.name == "labelsTr" and tiny_task.target_dir.name in str(p) for p in watched_reads)


def test_test_labels_cannot_be_requested_for_training(tiny_task):
    from diffuse_uda.errors import ConfigError

    with pytest.raises(ConfigError):
        ReferenceLabels(tiny_task.target_dir, split="Ts", purpose="oracle-training")
    with pytest.raises(ConfigError):
        ReferenceLabels(tiny_task.target_dir, split="Tr")


def _imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_only_known_modules_use_the_reference_label_reader():
    """Structural guard: the reader of target labels is imported only by evaluation/reporting code
    and by the oracle's data builder (target *training* labels, never the test split)."""
    users = {str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
             if "diffuse_uda.evaluation.reference.ReferenceLabels" in _imports_of(p)}
    allowed = {"evaluation/evaluate.py", "pipeline/experiment.py", "pipeline/train.py", "report/run_report.py",
               "cli.py", "pipeline/pseudolabel.py"}
    assert users <= allowed, users - allowed


@pytest.mark.parametrize(("init_strength", "check", "stage3_pseudo"),
                         [(1.0, False, False), (0.5, False, False), (1.0, True, False), (1.0, False, True)])
def test_pipeline_run_reads_target_labels_only_in_evaluation_after_all_training(tiny_task, tmp_path, monkeypatch,
                                                                                init_strength, check, stage3_pseudo):
    """`diffuse-uda run` (stage 1 with the label-free appearance choice, the longer training and two self-training
    rounds, pseudo-labels, generator, synthesis from noise or from the masks' own images, the synthetic check's two
    segmenters when it is on, stage 3 unless the check drops it, with or without stage 1's pseudo-labelled target
    images): the target training labels are deleted, and every read of a target test label happens inside the
    evaluation module's reader, after the last training step of any stage."""
    import inspect

    from diffuse_uda.pipeline.run import CHECK_STAGE, PipelineConfig, run_pipeline
    from diffuse_uda.pipeline.synthetic_check import read_check
    from diffuse_uda.training.trainer import Trainer

    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    shutil.rmtree(tiny_task.target_dir / "labelsTr")
    events: list[tuple[str, bool]] = []
    original_load, original_fit = nibabel.load, Trainer.fit

    def load(filename, *args, **kwargs):
        path = Path(filename).resolve()
        if path.parent.name.startswith("labels") and tiny_task.target_dir.resolve() in path.parents:
            in_reader = any(f.filename.endswith("evaluation/reference.py") for f in inspect.stack())
            events.append(("target-label", in_reader))
        return original_load(filename, *args, **kwargs)

    def fit(self):  # noqa: ANN202
        events.append(("train", True))
        return original_fit(self)

    monkeypatch.setattr(nibabel, "load", load)
    monkeypatch.setattr(Trainer, "fit", fit)
    cfg = PipelineConfig(profile="smoke", segmentation={"training": {"iterations": 2, "device": "cpu"},
                                                        "method": {"appearance_candidates": ["paper", "bezier"]}},
                         diffusion={"iterations": 2}, synthesis={"steps": 2, "init_strength": init_strength},
                         synthetic_check=check, stage3_pseudolabels=stage3_pseudo)
    run_pipeline(tiny_task, tmp_path / "run", cfg, progress=False)
    kinds = [k for k, _ in events]
    # Two stage-1 candidates, the chosen one trained for longer, two self-training rounds, stage 3 (unless the check
    # drops it); the check's two segmenters.
    verdict = read_check(tmp_path / "run" / CHECK_STAGE) if check else None
    assert kinds.count("train") == 5 + (verdict is None or verdict.use_synthetic) + 2 * check
    assert "target-label" in kinds and all(ok for k, ok in events if k == "target-label")
    assert max(i for i, k in enumerate(kinds) if k == "train") < kinds.index("target-label")


def test_adapt_source_free_entry_point_never_reads_target_labels(tiny_task, smoke_config, tmp_path, watched_reads,
                                                                 monkeypatch):
    """`diffuse-uda adapt-source-free` (HEAL) through the command line, with every target label deleted."""
    import sys

    from diffuse_uda.cli import main
    from diffuse_uda.diffusion.config import DiffusionConfig
    from diffuse_uda.methods.heal import train_source_diffusion

    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    run = train_method(tiny_task, "source-only", smoke_config, tmp_path / "run", progress=False)
    ckpt = train_source_diffusion(tiny_task, tmp_path / "gen", DiffusionConfig.smoke(iterations=2), device="cpu",
                                  progress=False)
    _hide_target_labels(tiny_task)
    watched_reads.clear()
    saved = sys.argv
    sys.argv = ["diffuse-uda", "adapt-source-free", "--model", str(run), "--diffusion", str(ckpt), "--images",
                str(tiny_task.target_dir), "--out", str(tmp_path / "preds"), "--n-samples", "2", "--steps", "2",
                "--device", "cpu"]
    try:
        main()
    except SystemExit as exc:
        assert exc.code in (0, None)
    finally:
        sys.argv = saved
    assert len(list((tmp_path / "preds").glob("*.nii.gz"))) == 2
    assert watched_reads and not [p for p in watched_reads if p.parent.name.startswith("labels")]
