"""The run report's account of the appearance choice."""

from __future__ import annotations

from diffuse_uda.pipeline.appearance_choice import RULES, AppearanceChoice
from diffuse_uda.report.run_report import after_choice_sentence, guard_sentence


def _choice(rule: str, floor: float | None, support: float | None = 0.85) -> AppearanceChoice:
    agreement = {"mix": {"bezier-ipa": 0.8}, "bezier-ipa": {"mix": 0.8}}
    return AppearanceChoice(chosen="bezier-ipa", rule=RULES[rule], scores={"mix": -0.16, "bezier-ipa": -0.13},
                            agreement=agreement, agreement_scores={"mix": 0.9, "bezier-ipa": 0.8},
                            class_ratio_kl={"mix": 0.16, "bezier-ipa": 0.13}, class_ratio_challenger="bezier-ipa",
                            class_ratio_support=support, class_ratio_floor=floor,
                            entropy={"mix": 0.1, "bezier-ipa": 0.1}, candidates={}, seconds=1.0)


def test_guard_sentence_says_what_each_rule_used() -> None:
    guarded = guard_sentence(_choice("guarded-class-ratio", None))
    assert "85.0 %" in guarded and "overrules agreement from 95 %" in guarded and "noise floor" not in guarded
    margin = guard_sentence(_choice("margin-class-ratio", 0.0024))
    assert "not used by this rule" in margin and "overrules agreement from" not in margin
    assert "mix (agreement's pick) 0.1600, bezier-ipa 0.1300" in margin and "0.0024 (the noise floor)" in margin
    floored = guard_sentence(_choice("floored-class-ratio", 0.0024))
    assert "overrules agreement from 95 %" in floored and "0.0024 (the noise floor)" in floored
    assert guard_sentence(_choice("guarded-class-ratio", None, support=None)) == ""


def test_after_choice_sentence_says_what_was_trained_after_the_choice() -> None:
    assert after_choice_sentence({}) == ""
    assert after_choice_sentence({"self_training_rounds": 0, "longer_training": 0}) == ""
    assert "Then 1 self-training round:" in after_choice_sentence({"self_training_rounds": 1})
    assert "Then 2 self-training rounds:" in after_choice_sentence({"self_training_rounds": 2})
    longer = after_choice_sentence({"longer_training": 2, "self_training_rounds": 0})
    assert "2 times the updates" in longer and "round" not in longer
    both = after_choice_sentence({"longer_training": 2, "self_training_rounds": 1})
    assert both.index("2 times the updates") < both.index("Then 1 self-training round")
    # One candidate (colour photos since rule U): it was not trained before, so nothing is "again".
    single = after_choice_sentence({"longer_training": 2, "self_training_rounds": 0}, single=True)
    assert single == " It was trained for 2 times the updates."
