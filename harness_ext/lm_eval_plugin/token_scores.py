"""Per-token numbers of an answer (log-probs, argmax flags, the next-token distribution's mean
and variance) and the memorisation metrics read from them; why they are missing when they are."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness_ext.lm_eval_plugin.registry import MEMORIZATION_METRICS
from harness_ext.metrics import privacy
from harness_ext.metrics.aggregate import not_computed

NO_TOKENS = not_computed(
    "needs per-token log-probs: set token_scores auto or requests, or score with --model "
    "hf-unlearn (lm-unlearn score's default)"
)
NO_DISTRIBUTION = not_computed(
    "Min-K%++ needs the model's whole next-token distribution at every answer token, which "
    "lm-eval's hf and vllm backends do not return; score with --model hf-unlearn"
)
NO_TOKENS_BEFORE_EOS = not_computed("the answer has no scored token before its EOS")


@dataclass
class TokenScores:
    """Per-token numbers of an answer's scored tokens (EOS excluded): log-probs, whether each
    is the argmax, and (from backends that return them) the mean and variance of the log-prob
    under the model's next-token distribution; ``source``: the backend or per-token requests."""

    logprobs: list[float]
    greedy: list[bool]
    expected: list[float] | None = None
    variances: list[float] | None = None
    source: str = "backend"


def memorization(tokens: TokenScores | str) -> dict[str, Any]:
    """Extraction strength and exact memorisation of a forget answer, or why they are missing."""
    if isinstance(tokens, str):
        return dict.fromkeys(MEMORIZATION_METRICS, tokens)
    if not tokens.greedy:
        return dict.fromkeys(MEMORIZATION_METRICS, NO_TOKENS_BEFORE_EOS)
    return {
        "forget_extraction_strength": privacy.extraction_strength(tokens.greedy),
        "forget_exact_memorization": privacy.exact_memorization(tokens.greedy),
    }
