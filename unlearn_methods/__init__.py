"""Unlearning methods as TRL-based trainers.

A method is FORGET+REG (``"ME+GD"``, ``"IDK+AP"``, ``"NPO+KL"``, ``"GA"``...): a forget term and an
optional regulariser, each a small module in ``unlearn_methods/losses`` registered by name.
"""

from unlearn_methods.losses.registry import (
    FORGET_TERMS,
    REGULARIZERS,
    UnknownMethodError,
    forget_term,
    regularizer,
)
from unlearn_methods.methods import Method, resolve_method

__all__ = [
    "FORGET_TERMS",
    "REGULARIZERS",
    "Method",
    "UnknownMethodError",
    "forget_term",
    "regularizer",
    "resolve_method",
]
