"""Methods by name: ``"FORGET+REG"`` resolved to a registered forget term and regulariser.

>>> method = resolve_method("ME+GD")
>>> method.forget.name, method.regularizer.name, method.needs_reference
('ME', 'GD', False)
"""

from __future__ import annotations

from dataclasses import dataclass

import unlearn_methods.losses  # noqa: F401  (each module registers its term)
from unlearn_methods.losses.registry import (
    EXAMPLE_SETS,
    FORGET_TERMS,
    PAPER_METHODS,
    REGULARIZERS,
    LossTerm,
    UnknownMethodError,
)


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
    return (
        f"forget terms: {', '.join(sorted(t.name for t in FORGET_TERMS.values()))}; "
        f"regularisers: {', '.join(sorted(t.name for t in REGULARIZERS.values()))}; "
        f"the paper's methods: {', '.join(PAPER_METHODS)}"
    )


def resolve_method(name: str) -> Method:
    """``"FORGET+REG"`` or ``"FORGET"`` → a :class:`Method`; unknown names list the known ones."""
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
