"""Pure metric functions of TOFU and the closer-look paper.

Everything here works on per-sample numbers and strings: no model, no lm-eval. The same code scores
an lm-eval run, a ``--log_samples`` file and the legacy TOFU logs. Definitions follow the project's
metric contract (NLLs are per-token means unless a name says otherwise).

>>> round(length_normalized_prob(0.0), 3)
1.0
>>> truth_ratio_forget(raw_truth_ratio(1.0, [2.0, 2.0]))  # R = e, min(R, 1/R) = 1/e
0.36787944117144233
>>> harmonic_mean([0.5, 0.0, 1.0])
0.0
>>> token_entropy("a b a b".split())
0.5
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Hashable, Sequence


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)


def rouge_l_recall(generation: str, target: str) -> float:
    """ROUGE-L recall of the ground truth ``target`` in ``generation`` (TOFU's scorer)."""
    return _rouge_scorer().score(target, generation)["rougeL"].recall


def mean_nll(summed_logprob: float, n_tokens: int) -> float:
    """Per-token mean NLL from a summed log-probability (lm-eval's loglikelihood result)."""
    if n_tokens <= 0:
        raise ValueError(f"an answer must have at least one token, got {n_tokens}")
    return -summed_logprob / n_tokens


def length_normalized_prob(answer_nll: float) -> float:
    """p̃(a) = exp(−L̄(a))."""
    return math.exp(-answer_nll)


def normalized_answer_prob(answer_nll: float, perturbed_nlls: Sequence[float]) -> float:
    """p̃(answer) / (p̃(answer) + Σ p̃(perturbed)): TOFU's Real Authors / World Facts probability."""
    answer = math.exp(-answer_nll)
    return answer / (answer + sum(math.exp(-nll) for nll in perturbed_nlls))


def log_truth_ratio(base_nll: float, perturbed_nlls: Sequence[float]) -> float:
    """log R = mean_j L̄(perturbed_j) − L̄(base)."""
    if not perturbed_nlls:
        raise ValueError("the truth ratio needs at least one perturbed answer")
    return sum(perturbed_nlls) / len(perturbed_nlls) - base_nll


def raw_truth_ratio(base_nll: float, perturbed_nlls: Sequence[float]) -> float:
    """R = exp(mean_j L̄(perturbed_j) − L̄(base)); R > 1 when the base answer is preferred."""
    return math.exp(log_truth_ratio(base_nll, perturbed_nlls))


def truth_ratio_forget(ratio: float) -> float:
    """TOFU's forget-set truth ratio min(R, 1/R) (1 = cannot tell true from false)."""
    return min(ratio, 1.0 / ratio)


def truth_ratio_utility(ratio: float) -> float:
    """TOFU's truth ratio on utility sets: max(0, 1 − 1/R) (higher = prefers the truth)."""
    return max(0.0, 1.0 - 1.0 / ratio)


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean; any zero component gives 0 (as scipy.stats.hmean does)."""
    if not values:
        raise ValueError("the harmonic mean of no values is undefined")
    if any(v < 0 for v in values):
        raise ValueError(f"the harmonic mean needs non-negative values, got {list(values)}")
    if any(v == 0 for v in values):
        return 0.0
    return len(values) / sum(1.0 / v for v in values)


def forget_quality(ratios: Sequence[float], reference_ratios: Sequence[float]) -> float:
    """p-value of the two-sample KS test between raw truth ratios and the retain model's."""
    from scipy.stats import ks_2samp

    if len(ratios) == 0 or len(reference_ratios) == 0:
        raise ValueError("forget quality needs truth ratios from both models")
    return float(ks_2samp(list(ratios), list(reference_ratios)).pvalue)


# ---------------------------------------------------------------- closer-look metrics
ENTAILMENT_ROUGE_GATE = 0.1


def truth_ratio_closer_look(ratio: float) -> float:
    """Per-sample term of the closer-look forget truth ratio, 1 − min(R, 1/R).

    Its mean is the paper's "1 − mean min(R, 1/R)" (higher = less forgotten).
    """
    return 1.0 - truth_ratio_forget(ratio)


def token_entropy(tokens: Sequence[Hashable]) -> float:
    """Normalised unigram entropy of a generation's tokens: (−Σ f log2 f) / log2(n).

    0 for a single repeated token (or n ≤ 1), 1 when all n tokens differ. Low values flag the
    repetitive gibberish some unlearning methods produce.
    """
    n = len(tokens)
    if n <= 1:
        return 0.0
    entropy = -sum((c / n) * math.log2(c / n) for c in Counter(tokens).values())
    return entropy / math.log2(n) + 0.0  # + 0.0 turns -0.0 (one repeated token) into 0.0


def clipped_cosine(u: Sequence[float], v: Sequence[float]) -> float:
    """max(0, cos(u, v)); 0 when either vector is zero."""
    dot = sum(a * b for a, b in zip(u, v, strict=True))
    norm = math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v))
    return max(0.0, dot / norm) if norm > 0 else 0.0


def entailment_score(label: str, rouge_recall: float) -> float:
    """1.0 when the NLI model's top label is entailment and ROUGE-L recall ≥ 0.1, else 0.0."""
    if rouge_recall < ENTAILMENT_ROUGE_GATE:
        return 0.0
    return 1.0 if label.strip().lower() == "entailment" else 0.0


def forget_efficacy(
    rouge_recall: float, prob: float, truth_ratio_cl: float, cosine: float, entailment: float
) -> float:
    """FE = 1 − mean of the five forget-set numbers (truth ratio in its closer-look form)."""
    return 1.0 - (rouge_recall + prob + truth_ratio_cl + cosine + entailment) / 5.0
