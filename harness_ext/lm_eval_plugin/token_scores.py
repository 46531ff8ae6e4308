"""Per-token numbers of an answer (log-probs, argmax flags, the next-token distribution's mean
and variance) and the memorisation metrics read from them; why they are missing when they are."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness_ext.lm_eval_plugin.registry import MEMORIZATION_METRICS
from harness_ext.lm_eval_plugin.requests import DocPlan
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


LOG_HALF = math.log(0.5)


def read_token_scores(
    plan: DocPlan, likelihoods: list, option: str, eos_scored: bool
) -> tuple[TokenScores | str, int]:
    """The per-token numbers of the ground truth's scored tokens but the final EOS (as
    open-unlearning drops it for Min-K%, Min-K%++ and memorisation): the backend's own, or
    those of the per-token requests; else why there are none. ``option`` is the task option
    ``token_scores``; ``eos_scored``: the scored tokens end in EOS (``scored_tokens: tofu``).
    Also returns how many tokens' argmax flag could not be told (see below)."""
    given = getattr(likelihoods[0], "tokens", None)
    requested = option == "requests" and plan.probes
    if given and len(given) >= plan.counts[0] and not requested:
        details = list(given[-plan.counts[0] :])
        details = details[:-1] if eos_scored else details
        scores = TokenScores(
            logprobs=[t[0] for t in details],
            greedy=[bool(t[3]) for t in details],
            expected=[t[1] for t in details],
            variances=[t[2] for t in details],
        )
        return scores, 0
    if not plan.probes:
        if option == "off":
            return not_computed("token_scores is off"), 0
        if not eos_scored:
            return not_computed(
                "per-token requests score TOFU's tokens: drop scored_tokens answer-only, "
                "or score with --model hf-unlearn"
            ), 0
        return NO_TOKENS, 0
    logprobs, greedy, undetermined = [], [], 0
    for probe in plan.probes:
        total, is_greedy = float(likelihoods[probe.index][0]), bool(likelihoods[probe.index][1])
        if probe.boundary is not None:
            total -= float(likelihoods[probe.boundary][0])
            if not likelihoods[probe.boundary][1]:
                # the whitespace before the token was scored with it and is not the argmax,
                # so the flag says nothing of the token: above probability 1/2 it is the
                # argmax for sure; below, it is counted as not and reported
                is_greedy = total > LOG_HALF
                undetermined += total <= LOG_HALF
        # byte pieces of one character share their log-prob evenly (no string ends
        # between them); the count is in the results (token_scores.shared_characters)
        logprobs += [total / probe.size] * probe.size
        greedy += [is_greedy] * probe.size
    return TokenScores(logprobs, greedy, source="requests"), undetermined
