"""The registry of loss terms: a term is a function of a
:class:`~unlearn_methods.losses.context.LossContext` that declares which example sets it reads
("forget", "retain", "forget_idk", "retain_idk") and which of them the reference model must
score. Adding a method is one small module in ``unlearn_methods/losses`` that registers its term
with :func:`forget_term` or :func:`regularizer`; :mod:`unlearn_methods.methods` resolves names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

    from unlearn_methods.losses.context import LossContext

EXAMPLE_SETS = ("forget", "retain", "forget_idk", "retain_idk")
TermKind = Literal["forget", "regularizer"]
# The methods of the paper and its baselines, listed in help texts.
PAPER_METHODS = ("ME+GD", "IDK+AP", "GA", "GA+GD", "GA+KL", "NPO+GD", "NPO+KL", "DPO+GD", "IDK+GD")


class UnknownMethodError(ValueError):
    """A method name that does not resolve to registered terms."""


@dataclass(frozen=True)
class LossTerm:
    name: str
    kind: TermKind
    fn: Callable[[LossContext], torch.Tensor]
    needs: tuple[str, ...]
    reference_needs: tuple[str, ...] = ()
    description: str = ""
    uses_hidden_states: bool = False

    @property
    def needs_reference(self) -> bool:
        return bool(self.reference_needs)

    def __call__(self, context: LossContext) -> torch.Tensor:
        return self.fn(context)


FORGET_TERMS: dict[str, LossTerm] = {}
REGULARIZERS: dict[str, LossTerm] = {}


def _register(kind: TermKind, name: str, needs, reference_needs, description, hidden=False):
    registry = FORGET_TERMS if kind == "forget" else REGULARIZERS
    unknown = set(needs) - set(EXAMPLE_SETS)
    if unknown:
        raise ValueError(f"term {name} reads unknown example sets {sorted(unknown)}")

    def decorate(fn):
        key = name.upper()
        if key in registry and registry[key].fn is not fn:
            raise ValueError(f"a {kind} term named {name!r} is already registered")
        registry[key] = LossTerm(
            name, kind, fn, tuple(needs), tuple(reference_needs), description, hidden
        )
        return fn

    return decorate


def forget_term(
    name: str, needs=("forget",), reference_needs=(), description: str = "", hidden_states=False
):
    """Register a forget term (decorator)."""
    return _register("forget", name, needs, reference_needs, description, hidden_states)


def regularizer(name: str, needs=("retain",), reference_needs=(), description: str = ""):
    """Register a regulariser (decorator)."""
    return _register("regularizer", name, needs, reference_needs, description)
