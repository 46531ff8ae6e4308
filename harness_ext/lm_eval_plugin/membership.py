"""The per-row items of membership inference a task reports for each forget and holdout row:
one per attack (LOSS, ZLib, Min-K%, Min-K%++, the reference attack) and one for privleak; the
AUC aggregations of :mod:`harness_ext.lm_eval_plugin.registry` read them."""

from __future__ import annotations

from typing import Any

from harness_ext.lm_eval_plugin.token_scores import (
    NO_DISTRIBUTION,
    NO_TOKENS_BEFORE_EOS,
    TokenScores,
)
from harness_ext.metrics import privacy


def membership_items(
    doc: dict,
    nll: float,
    zlib_text: str,
    tokens: TokenScores | str,
    reference_score: float | str,
    retain_auc: float | str | None,
) -> dict[str, Any]:
    """The items of one row: its answer's mean NLL, the text ZLib compresses, its per-token
    numbers (or why there are none), the reference attack's score, and the retain model's AUC
    that privleak compares with."""
    scores: dict[str, float | str] = {
        "loss": nll,
        "zlib": privacy.zlib_score(nll, zlib_text),
        "min_k": tokens,
        "min_k_plus_plus": tokens,
        "reference": reference_score,
    }
    if isinstance(tokens, TokenScores):
        if not tokens.logprobs:
            scores["min_k"] = scores["min_k_plus_plus"] = NO_TOKENS_BEFORE_EOS
        else:
            scores["min_k"] = privacy.min_k(tokens.logprobs)
            scores["min_k_plus_plus"] = (
                privacy.min_k_plus_plus(tokens.logprobs, tokens.expected, tokens.variances)
                if tokens.expected is not None
                else NO_DISTRIBUTION
            )
    items: dict[str, Any] = {
        privacy.mia_key(attack): {"set": doc["set"], "row": doc["row"], "score": score}
        for attack, score in scores.items()
    }
    items["privleak"] = {
        "set": doc["set"],
        "row": doc["row"],
        "score": scores[privacy.PRIVLEAK_ATTACK],
        "retain_auc": retain_auc,
    }
    return items
