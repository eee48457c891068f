"""Target-supervised training: the oracle upper bound. Reported as a bound, never as a method.

It is the only trainer that sees target labels, and only those of the target *training* split,
read through the evaluation module's reference-label reader. The held-out test split is never used.
"""

from __future__ import annotations

from diffuse_uda.methods.registry import register
from diffuse_uda.methods.source_only import SourceOnly


@register
class TargetSupervised(SourceOnly):
    name = "target-supervised"
    summary = "ORACLE upper bound: supervised on labelled target training data (not a UDA method)."
    uses_target_labels = True
