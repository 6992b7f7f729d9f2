"""Masking units (one file each, registered in `base.UNITS`), the mixer, the collators and the epoch sampler."""

from . import entity, ngram, span, token, word  # noqa: F401  (registration)
from .base import UNITS, Atoms, Example, register_unit
from .collator import CausalLMCollator, MaskedLMCollator
from .mixer import MaskingSpec, parse_masking
from .sampling import EpochIndexed, EpochSampler

__all__ = [
    "UNITS",
    "Atoms",
    "CausalLMCollator",
    "EpochIndexed",
    "EpochSampler",
    "Example",
    "MaskedLMCollator",
    "MaskingSpec",
    "parse_masking",
    "register_unit",
]
