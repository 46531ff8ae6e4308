"""What a loss term sees in one training step: the model's outputs on each example set.

Each example set of the batch ("forget", "retain", "forget_idk", "retain_idk") goes through the
model at most once per step; terms that read the same set share the cached outputs. The reference
model (when a term needs it) runs without gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from unlearn_methods.losses import functional as F


@dataclass(frozen=True)
class TermSettings:
    beta: float = 0.1
    gamma: float = 0.0  # SimNPO margin
    compat: str = "paper"  # "paper" or "closer-look" (the public code's variants)
    rmu_layer: int | None = None  # RMU: steered layer (default: the middle one)
    rmu_steering: float = 6.5  # RMU: norm c of the random target direction
    rmu_alpha: float = 100.0  # RMU: weight of keeping retain activations


@dataclass
class SetOutput:
    logits: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None  # only for terms that read them

    @cached_property
    def summed_nll(self) -> torch.Tensor:
        return F.summed_nll(self.logits, self.labels)

    @cached_property
    def token_counts(self) -> torch.Tensor:
        return F.token_counts(self.labels)

    @cached_property
    def mean_token_nll(self) -> torch.Tensor:
        return F.mean_token_nll(self.logits, self.labels)

    @property
    def shifted(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits predicting the next token, mask of supervised targets)."""
        logits, targets = F.shift(self.logits, self.labels)
        return logits, targets != F.IGNORE_INDEX


# (input_ids, attention_mask) -> (logits, hidden states or None)
Forward = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, tuple | None]]


class LossContext:
    """Lazily runs the policy (and reference) model on the example sets terms ask for."""

    def __init__(
        self,
        batch: dict[str, Any],
        policy: Forward,
        reference: Forward | None = None,
        settings: TermSettings | None = None,
    ) -> None:
        self.batch = batch
        self._policy = policy
        self._reference = reference
        self.settings = settings or TermSettings()
        self._outputs: dict[tuple[str, str], SetOutput] = {}

    def _inputs(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        try:
            return (
                self.batch[f"{name}_input_ids"],
                self.batch[f"{name}_attention_mask"],
                self.batch[f"{name}_labels"],
            )
        except KeyError:
            raise KeyError(f"the batch has no {name!r} examples") from None

    def policy(self, name: str) -> SetOutput:
        key = ("policy", name)
        if key not in self._outputs:
            input_ids, mask, labels = self._inputs(name)
            logits, hidden = self._policy(input_ids, mask)
            self._outputs[key] = SetOutput(logits, labels, mask, hidden)
        return self._outputs[key]

    def reference(self, name: str) -> SetOutput:
        if self._reference is None:
            raise RuntimeError("this method declared no reference model, but a term asked for one")
        key = ("reference", name)
        if key not in self._outputs:
            input_ids, mask, labels = self._inputs(name)
            with torch.no_grad():
                logits, hidden = self._reference(input_ids, mask)
            hidden = tuple(h.detach() for h in hidden) if hidden is not None else None
            self._outputs[key] = SetOutput(logits.detach(), labels, mask, hidden)
        return self._outputs[key]
