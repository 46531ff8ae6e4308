"""Loss terms behind a registry: a method is a name resolved to a forget term and a regulariser.

A term is a function of a :class:`~unlearn_methods.context.LossContext` that declares which example
sets it reads ("forget", "retain", "forget_idk", "retain_idk") and which of them the reference
model must score. Adding a method is one small module in ``unlearn_methods/losses`` that registers
its term:

>>> from unlearn_methods import resolve_method
>>> method = resolve_method("ME+GD")
>>> method.forget.name, method.regularizer.name, method.needs_reference
('ME', 'GD', False)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

    from unlearn_methods.context import LossContext

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


@dataclass(frozen=True)
class Method:
    name: str
    forget: LossTerm
    regularizer: LossTerm | None

    @property
    def terms(self) -> tuple[LossTerm, ...]:
        return (self.forget,) if self.regularizer is None else (self.forget, self.regularizer)

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(s for s in EXAMPLE_SETS if any(s in t.needs for t in self.terms))

    @property
    def reference_needs(self) -> tuple[str, ...]:
        return tuple(s for s in EXAMPLE_SETS if any(s in t.reference_needs for t in self.terms))

    @property
    def needs_reference(self) -> bool:
        return bool(self.reference_needs)

    @property
    def uses_hidden_states(self) -> bool:
        return any(t.uses_hidden_states for t in self.terms)


def known_terms() -> str:
    _load_builtin_terms()
    return (
        f"forget terms: {', '.join(sorted(t.name for t in FORGET_TERMS.values()))}; "
        f"regularisers: {', '.join(sorted(t.name for t in REGULARIZERS.values()))}; "
        f"the paper's methods: {', '.join(PAPER_METHODS)}"
    )


def resolve_method(name: str) -> Method:
    """``"FORGET+REG"`` or ``"FORGET"`` → a :class:`Method`; unknown names list the known ones."""
    _load_builtin_terms()
    parts = [p.strip().upper() for p in str(name).split("+")]
    if not 1 <= len(parts) <= 2 or not all(parts):
        raise UnknownMethodError(f"method {name!r} is not FORGET or FORGET+REG; {known_terms()}")
    forget = FORGET_TERMS.get(parts[0])
    if forget is None:
        raise UnknownMethodError(f"unknown forget term {parts[0]!r} in {name!r}; {known_terms()}")
    reg = None
    if len(parts) == 2:
        reg = REGULARIZERS.get(parts[1])
        if reg is None:
            raise UnknownMethodError(
                f"unknown regulariser {parts[1]!r} in {name!r}; {known_terms()}"
            )
    canonical = forget.name if reg is None else f"{forget.name}+{reg.name}"
    return Method(canonical, forget, reg)


def _load_builtin_terms() -> None:
    import unlearn_methods.losses  # noqa: F401  (each module registers its term)
