"""The label-free rule that picks the guidance scale."""

from __future__ import annotations

from diffuse_uda.diffusion.fidelity import FidelityReport
from diffuse_uda.pipeline.generator_choice import rank_choice


def _report(mask: float, frechet: float, style: float, meaningful: bool = True) -> FidelityReport:
    return FidelityReport(n_images=8, mask_fidelity_mean=mask, n_mask_scored=8, style_fidelity=style,
                          classifier_heldout_accuracy=0.9 if meaningful else 0.5,
                          style_fidelity_meaningful=meaningful, frechet_distance_target=frechet)


def test_best_mean_rank_wins_and_ties_go_to_the_smaller_scale() -> None:
    reports = {"1.0": _report(0.8, 10.0, 0.2), "2.0": _report(0.78, 5.0, 0.7), "3.0": _report(0.6, 6.0, 0.9)}
    chosen, ranks = rank_choice(reports)
    assert chosen == "2.0" and ranks == {"1.0": 4 / 3, "2.0": 2 / 3, "3.0": 1.0}
    tie = {"1.0": _report(0.8, 6.0, 0.5), "2.0": _report(0.7, 5.0, 0.5)}
    assert rank_choice(tie)[0] == "1.0"


def test_style_is_ignored_when_its_classifier_cannot_tell_the_domains_apart() -> None:
    reports = {"1.0": _report(0.8, 5.0, 0.0, meaningful=False), "2.0": _report(0.7, 6.0, 1.0, meaningful=False)}
    chosen, ranks = rank_choice(reports)
    assert chosen == "1.0" and ranks == {"1.0": 0.0, "2.0": 1.0}
