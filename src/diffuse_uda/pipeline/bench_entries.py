"""Every name ``diffuse-uda bench --methods`` accepts, in one place.

An entry is either a registered method (``ascplus``), a preset of a method's options (the rows of
the paper's Table-4 ablation ``ascplus-M1..M7``, the component ablations of the comparators), or a
composite entry that is not one trained method (the Diffuse-UDA pipeline and its Table-3 rows,
HEAL and its ablation rows; see :mod:`diffuse_uda.pipeline.bench_runs`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from diffuse_uda.errors import ConfigError
from diffuse_uda.methods.asc import APPEARANCE_PRESETS, ASCPLUS_ABLATION, CHOICE_ALONE
from diffuse_uda.methods.registry import available_methods
from diffuse_uda.methods.source_only_dg import DG_RANDOM_CHOICE

PIPELINE_ENTRY = "diffuse-uda"
# HEAL's ablation rows (its Table 3): hierarchical denoising alone, + edge-guided selection, + size-aware fusion.
HEAL_ENTRIES: dict[str, dict[str, Any]] = {
    "heal-HD": {"edge_guided_selection": False, "size_aware_fusion": False},
    "heal-HD-EGS": {"size_aware_fusion": False},
    "heal": {},
}
# The same rows with the label-free calibrated thresholds (HEALConfig.entropy_quantile) instead of the
# paper's fixed tau = 0.2: q = 0.9 was fixed before any measurement, not tuned on labels.
HEAL_CALIBRATED_QUANTILE = 0.9
HEAL_ENTRIES.update({f"{name}-calibrated": {**opts, "entropy_quantile": HEAL_CALIBRATED_QUANTILE}
                     for name, opts in list(HEAL_ENTRIES.items())})

# Component ablations of the comparators, as bench entries (one row = the method without one part).
COMPONENT_ABLATION: dict[str, tuple[str, dict[str, Any]]] = {
    "ad-no-SVDA": ("ad", {"svda": False}),
    "ad-no-diffusion": ("ad", {"diffusion": False}),
    "ad-no-DRS": ("ad", {"drs": False}),
    "ad-no-RS": ("ad", {"rs": False}),
    # Not a paper row: A&D as before session 6, its decoders from independent initialisations.
    "ad-independent-init": ("ad", {"shared_init": False}),
    "glua-no-style-transfer": ("glua", {"style_transfer": False}),
    "glua-no-local-alignment": ("glua", {"local_alignment": False}),
    "glua-no-output-adversary": ("glua", {"output_adversarial": False}),
    # Not a paper row: GLUA as benched before session 10, its style stage taking 40 % of the segmenter's updates.
    "glua-shared-budget": ("glua", {"style_budget": "shared"}),
    # Not paper rows: the product's stage 1 followed by one (session 12) or two (session 13) self-training rounds,
    # on the chosen candidate as it was trained (`ascplus-self-training-2` on scans: the default of sessions 23-26).
    "ascplus-self-training": ("ascplus", {"self_training_rounds": 1, "longer_training": 0}),
    "ascplus-self-training-2": ("ascplus", {"self_training_rounds": 2, "longer_training": 0}),
    # Not a paper row: the choice, then the chosen candidate trained again for twice the updates, no round (the arm
    # of rule P, session 26: undecided against the two rounds; with the two rounds on top it is the default on scans
    # since rule Q, session 27).
    "ascplus-longer-training": ("ascplus", {"longer_training": 2, "self_training_rounds": 0}),
    # Not paper rows: the class-ratio rule chooses the appearance transfer (session 13), then no or one round.
    # The rule rows are the choice alone (no longer training, no self-training round), as they were made before
    # rules L, M and Q (sessions 22, 23, 27) made the training after the choice the default on scans.
    "ascplus-class-ratio": ("ascplus", {"appearance_rule": "class-ratio", **CHOICE_ALONE}),
    "ascplus-class-ratio-self-training": ("ascplus", {"appearance_rule": "class-ratio", "self_training_rounds": 1,
                                                      "longer_training": 0}),
    # Session 16: agreement, overruled by the class-ratio prior where a case bootstrap backs it (the default of
    # sessions 16-20); `ascplus-agreement` is the default of sessions 7-15. Session 21: the same with a noise floor
    # from the source's own patients (rule J, the default since then: `ascplus`'s choice, which since session 22
    # adds training after the choice on scans), and the floor instead of the bootstrap (rule K, failed its
    # held-out check).
    "ascplus-guarded-class-ratio": ("ascplus", {"appearance_rule": "guarded-class-ratio", **CHOICE_ALONE}),
    "ascplus-floored-class-ratio": ("ascplus", {"appearance_rule": "floored-class-ratio", **CHOICE_ALONE}),
    "ascplus-margin-class-ratio": ("ascplus", {"appearance_rule": "margin-class-ratio", **CHOICE_ALONE}),
    "ascplus-agreement": ("ascplus", {"appearance_rule": "agreement", **CHOICE_ALONE}),
    # Not a paper row: the domain-generalisation baseline with each restyling replaced by two draws blended by a
    # smooth random field (IPA, Ouyang et al. 2022; session 15).
    "source-only-dg-ipa": ("source-only-dg", {"appearance": "pseudo-correlation", "appearance_options": {
        "member": "random-choice", "member_options": DG_RANDOM_CHOICE}}),
}


def generation_ablation_rows() -> list[str]:
    """Pipeline rows: the Table-3 ablation M1..M6 (on the default generator) and ``paper`` (the paper's
    generator: no domain input, DDIM-25, no guidance, every pair weighted alike)."""
    from diffuse_uda.pipeline.run import GENERATION_ABLATION

    return [*GENERATION_ABLATION, "paper"]


def is_composite(entry: str) -> bool:
    return entry in HEAL_ENTRIES or entry == PIPELINE_ENTRY or (
        entry.startswith(PIPELINE_ENTRY + "-") and entry.removeprefix(PIPELINE_ENTRY + "-")
        in generation_ablation_rows())


def bench_entries() -> dict[str, str]:
    """Every accepted entry name with a one-line description."""
    out = {name: cls.summary for name, cls in available_methods().items()}
    out.update({f"ascplus-{row}": f"ASCPlus ablation row {row} (paper Table 4)" for row in ASCPLUS_ABLATION})
    out.update({f"ascplus-{name}": "ASCPlus with appearance " + json.dumps(preset, separators=(",", ":"))
                for name, preset in APPEARANCE_PRESETS.items()})
    out["ascplus-paper"] = "ASCPlus exactly as in the paper (FFT amplitude swap, adaptive beta)"
    out.update({name: f"{method} with {', '.join(f'{k}={v}' for k, v in options.items())}"
                for name, (method, options) in COMPONENT_ABLATION.items()})
    out[PIPELINE_ENTRY] = "the Diffuse-UDA pipeline (stage 1 = the bench's ascplus run of the same seed)"
    out.update({f"{PIPELINE_ENTRY}-{row}": f"Diffuse-UDA generation ablation row {row} (paper Table 3)"
                for row in generation_ablation_rows() if row != "paper"})
    out[f"{PIPELINE_ENTRY}-paper"] = "Diffuse-UDA with the paper's generator (no domain input, no guidance, DDIM-25)"
    for name, opts in HEAL_ENTRIES.items():
        off = [k for k, v in opts.items() if v is False]
        text = "HEAL (source-free, learning-free) " + ("ablation: " + ", ".join(off) + " off" if off else "full")
        if opts.get("entropy_quantile") is not None:
            text += f"; calibrated thresholds (entropy quantile {opts['entropy_quantile']})"
        out[name] = text
    return out


def resolve_method(entry: str) -> tuple[str, dict[str, Any]]:
    """A method entry -> (registered method, option preset). Composite entries are not methods."""
    if entry.startswith("ascplus-") and entry.split("-", 1)[1] in ASCPLUS_ABLATION:
        method, options = ASCPLUS_ABLATION[entry.split("-", 1)[1]]
        return method, dict(options)
    if entry.startswith("ascplus-") and entry.removeprefix("ascplus-") in APPEARANCE_PRESETS:
        return "ascplus", json.loads(json.dumps(APPEARANCE_PRESETS[entry.removeprefix("ascplus-")]))
    if entry in COMPONENT_ABLATION:
        method, options = COMPONENT_ABLATION[entry]
        return method, dict(options)
    if entry not in available_methods():
        raise ConfigError(f"unknown bench entry {entry!r}; available: {', '.join(bench_entries())}")
    return entry, {}


def check_entries(entries: Sequence[str]) -> None:
    """Reject unknown or repeated entries before any work starts."""
    known = bench_entries()
    unknown = [e for e in entries if e not in known]
    if unknown:
        raise ConfigError(f"unknown bench entr{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))}; "
                          f"available: {', '.join(known)}")
    repeated = sorted({e for e in entries if list(entries).count(e) > 1})
    if repeated:
        raise ConfigError(f"bench entries given twice: {', '.join(repeated)}")
    if not entries:
        raise ConfigError("no bench entries given")
