"""The causality proof: the float64 dependency map and value walk, purity, the size rule, the block-by-block proof at
full size, receptive fields and the report of `arblocks build`.

It reads models through the contracts of :mod:`arblocks.core` and never imports the sampler or the training loop.
"""

from .check import (
    CausalityError,
    CausalityReport,
    FullSize,
    ModeReport,
    Violation,
    build_for_check,
    check_image,
    check_model,
    check_spec,
    dependency_map,
    float64_probe,
    perturbation_map,
    require_causal,
)
from .receptive_field import pixel_field
from .size_rule import SizeRule, size_rule

__all__ = [
    "CausalityError", "CausalityReport", "FullSize", "ModeReport", "SizeRule", "Violation", "build_for_check", "check_image", "check_model",
    "check_spec", "dependency_map", "float64_probe", "perturbation_map", "pixel_field", "require_causal", "size_rule",
]
