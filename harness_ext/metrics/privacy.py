"""Membership-inference and memorisation metrics: does the model still betray the forget set?

Per row, each attack gives a score where **higher means "looks less like training data"**
(a non-member). The AUC of an attack separates the forget rows (members before unlearning) from
holdout rows the model never saw: 1.0 means every forget row looks more like training data than
every holdout row (the forget set still leaks), 0.5 means they cannot be told apart (the retain
model's ideal), as in open-unlearning and MUSE.

Per-row scores (``tokens`` are the scored answer tokens, EOS included, as for every other
log-likelihood metric of the tasks):

* LOSS: the answer's mean NLL;
* ZLib: mean NLL / length in bytes of the zlib-compressed answer text;
* Min-K%: minus the mean of the ``k`` lowest fraction of token log-probs (``max(1, int(k·n))``
  tokens, k = 0.4);
* Min-K%++: the same over token log-probs standardised by the mean and standard deviation of the
  log-prob under the model's own next-token distribution (variance floored at 1e-6);
* reference: the row's mean NLL minus a reference model's (the retain model's) on the same row.

Memorisation on the forget set, from the teacher-forced greedy matches of the answer tokens:

* exact memorisation: the fraction of answer tokens that are the model's argmax;
* extraction strength: ``1 - k / n`` for the smallest ``k`` such that every token from ``k`` on
  is the argmax (open-unlearning's definition, including its floor: a row whose last token is
  not the argmax scores ``1 / n``).

>>> auc(member_scores=[0.1, 0.2], nonmember_scores=[0.5, 0.9])
1.0
>>> round(privleak(0.75, 0.5), 6)   # retain model at chance, this one separates 75 %
-50.0
>>> extraction_strength([False, True, True, True])
0.75
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from harness_ext.metrics.aggregate import not_computed

MIN_K_FRACTION = 0.4  # open-unlearning's k for Min-K% and Min-K%++
VARIANCE_FLOOR = 1e-6
HOLDOUT = "holdout"
MIA_ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus", "reference")
PRIVLEAK_ATTACK = "min_k"  # open-unlearning computes privleak from the Min-K% AUC


def mia_key(attack: str) -> str:
    """The reported metric name of one attack's AUC."""
    return f"mia_{attack}_auc"


def zlib_score(mean_nll: float, text: str) -> float:
    """ZLib attack: the mean NLL over the zlib-compressed size of the text in bytes."""
    return mean_nll / len(zlib.compress(text.encode("utf-8")))


def _lowest_fraction_mean(values: Sequence[float], k: float) -> float:
    count = max(1, int(len(values) * k))
    return sum(sorted(values)[:count]) / count


def min_k(token_logprobs: Sequence[float], k: float = MIN_K_FRACTION) -> float:
    """Min-K% attack: minus the mean of the lowest ``k`` fraction of the token log-probs."""
    if not token_logprobs:
        raise ValueError("Min-K% needs at least one scored token")
    return -_lowest_fraction_mean(token_logprobs, k)


def min_k_plus_plus(
    token_logprobs: Sequence[float],
    expected_logprobs: Sequence[float],
    logprob_variances: Sequence[float],
    k: float = MIN_K_FRACTION,
) -> float:
    """Min-K%++ attack: Min-K% over ``(log p(x_t) - mu_t) / sigma_t``, where mu_t and sigma_t²
    are the mean and variance of log p under the model's next-token distribution at step t."""
    if not token_logprobs:
        raise ValueError("Min-K%++ needs at least one scored token")
    standardised = [
        (lp - mu) / math.sqrt(max(var, VARIANCE_FLOOR))
        for lp, mu, var in zip(token_logprobs, expected_logprobs, logprob_variances, strict=True)
    ]
    return -_lowest_fraction_mean(standardised, k)


def exact_memorization(greedy: Sequence[bool]) -> float:
    """The fraction of answer tokens that are the model's argmax under teacher forcing."""
    if not greedy:
        raise ValueError("exact memorisation needs at least one scored token")
    return sum(bool(g) for g in greedy) / len(greedy)


def extraction_strength(greedy: Sequence[bool]) -> float:
    """``1 - k/n`` for the shortest answer prefix ``k`` after which the model's argmax gives
    every remaining token (open-unlearning's loop: ``k`` stops at ``n - 1``)."""
    n = len(greedy)
    if not n:
        raise ValueError("extraction strength needs at least one scored token")
    k = 0
    for k in range(n):
        if all(greedy[k:]):
            break
    return 1 - k / n


def auc(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> float:
    """ROC AUC of telling non-members (higher scores) from members: the probability that a
    holdout row scores above a forget row, ties counting half."""
    if not member_scores or not nonmember_scores:
        raise ValueError("an AUC needs member and non-member rows")
    wins = 0.0
    for member in member_scores:
        for other in nonmember_scores:
            wins += 1.0 if other > member else 0.5 if other == member else 0.0
    return wins / (len(member_scores) * len(nonmember_scores))


def privleak(auc_model: float, auc_retain: float) -> float:
    """Privacy leakage in percent, as open-unlearning and MUSE define it:
    ((1 − AUC) − (1 − AUC_retain)) / (1 − AUC_retain) · 100. Zero for a model that separates
    forget from holdout as the retain model does; negative when it separates them better
    (the forget set still leaks), positive when it over-unlearns."""
    base = 1.0 - auc_retain
    if base <= 0:
        raise ValueError(f"privleak is undefined for a retain-model AUC of {auc_retain}")
    return ((1.0 - auc_model) - base) / base * 100.0


# ------------------------------------------------------------------ lm-eval aggregations
# Each document of a tofu task reports, per attack, {"set": "forget" | "holdout", "score": x}
# (x a number, or a not-computed reason), or None for documents of the other sets.
def mia_auc_from_items(items: Sequence[Mapping[str, Any] | None]) -> float | str:
    """One attack's AUC from per-document items; a not-computed reason when it cannot be."""
    items = [item for item in items if item is not None]
    reasons = [i["score"] for i in items if isinstance(i.get("score"), str)]
    if reasons:
        return reasons[0]
    members = [float(i["score"]) for i in items if i["set"] != HOLDOUT]
    others = [float(i["score"]) for i in items if i["set"] == HOLDOUT]
    if not others:
        return not_computed("no holdout rows; set the task option holdout")
    if not members:
        return not_computed("no forget rows evaluated")
    return auc(members, others)


def privleak_from_items(items: Sequence[Mapping[str, Any] | None]) -> float | str:
    """privleak from the Min-K% items plus the retain reference's AUC each one carries."""
    present = [item for item in items if item is not None]
    model_auc = mia_auc_from_items(present)
    if isinstance(model_auc, str):
        return model_auc
    reference = next((i.get("retain_auc") for i in present if "retain_auc" in i), None)
    if isinstance(reference, str) or reference is None:
        return reference or not_computed("no retain reference; set retain_reference")
    try:
        return privleak(model_auc, float(reference))
    except ValueError as err:
        return not_computed(str(err))
