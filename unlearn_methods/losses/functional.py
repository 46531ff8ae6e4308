"""The tensor math of every unlearning loss, as small pure functions.

Shapes: ``logits`` [B, T, V] predict token t+1 at position t; ``labels`` [B, T] hold -100 where a
token is not supervised. NLLs named ``summed`` are summed over a sample's answer tokens (the spec's
NLL_θ(y|x)); ``mean_token_nll`` is the mean over all answer tokens of the batch (the spec's CE_θ).

>>> import torch
>>> logits = torch.zeros(1, 3, 4)          # uniform over 4 tokens
>>> labels = torch.tensor([[-100, 1, 2]])  # two supervised tokens
>>> round(mean_token_nll(logits, labels).item(), 4)   # log 4
1.3863
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def shift(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align predictions with targets: logits[:, :-1] predict labels[:, 1:]."""
    return logits[:, :-1, :], labels[:, 1:]


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each target token and the mask of supervised positions, [B, T-1]."""
    logits, targets = shift(logits, labels)
    mask = targets != IGNORE_INDEX
    safe = targets.masked_fill(~mask, 0)
    logprobs = torch.gather(logits.float().log_softmax(-1), 2, safe.unsqueeze(-1)).squeeze(-1)
    return logprobs * mask, mask


def summed_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """NLL of each sample's supervised tokens, summed: [B]."""
    logprobs, _ = token_logprobs(logits, labels)
    return -logprobs.sum(-1)


def token_counts(labels: torch.Tensor) -> torch.Tensor:
    """Supervised tokens per sample (targets after the shift): [B]."""
    return (labels[:, 1:] != IGNORE_INDEX).sum(-1)


def mean_token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CE_θ: mean NLL over every supervised token of the batch (a scalar)."""
    logprobs, mask = token_logprobs(logits, labels)
    return -logprobs.sum() / mask.sum().clamp(min=1)


def npo_loss(nll: torch.Tensor, reference_nll: torch.Tensor, beta: float) -> torch.Tensor:
    """−(2/β) · mean log σ(β · (NLL_θ − NLL_ref))."""
    return -(2.0 / beta) * F.logsigmoid(beta * (nll - reference_nll)).mean()


def simnpo_loss(
    nll: torch.Tensor, lengths: torch.Tensor, beta: float, gamma: float
) -> torch.Tensor:
    """−(2/β) · mean log σ(β · NLL_θ/|y| − γ): NPO without a reference, length-normalised."""
    return -(2.0 / beta) * F.logsigmoid(beta * nll / lengths.clamp(min=1) - gamma).mean()


def dpo_loss(
    nll_preferred: torch.Tensor,
    nll_rejected: torch.Tensor,
    reference_nll_preferred: torch.Tensor,
    reference_nll_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """−(2/β) · mean log σ(β · [(log π_θ(w) − log π_θ(l)) − (log π_ref(w) − log π_ref(l))]).

    With log π = −NLL; for unlearning the preferred answer w is the refusal, the rejected l the
    forget answer.
    """
    policy = nll_rejected - nll_preferred
    reference = reference_nll_rejected - reference_nll_preferred
    return -(2.0 / beta) * F.logsigmoid(beta * (policy - reference)).mean()


def answer_preservation_loss(
    nll_refusal: torch.Tensor, nll_answer: torch.Tensor, beta: float
) -> torch.Tensor:
    """AP: −(1/β) · mean log σ(β · (NLL_θ(idk|x_r) − NLL_θ(y_r|x_r))).

    Prefers the true retain answer over a refusal on the same retain question.
    """
    return -(1.0 / beta) * F.logsigmoid(beta * (nll_refusal - nll_answer)).mean()


def uniform_kl(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ME (paper): mean over masked positions of KL(p_θ ‖ U) = log V − H(p_θ).

    Minimising it maximises the predictive entropy.
    """
    logp = logits.float().log_softmax(-1)
    kl = math.log(logits.shape[-1]) + (logp.exp() * logp).sum(-1)  # log V − H
    mask = mask.to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


CODE_ME_EPSILON = 1e-12


def uniform_kl_reversed(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """ME as the closer-look public code computes it: per position
    KL(U ‖ p_θ) = Σ_v (1/V)(log(1/V) − log(softmax(z)_v + 1e-12)), in the logits' own dtype,
    averaged over the positions of ``mask`` (default: every position given).

    The 1e-12 matters: on a confident model log(p_v) of unlikely tokens runs to −∞ in bf16 and
    float32, and the epsilon caps it near log(1e-12) ≈ −27.6, which bounds loss and gradient.
    Callers pass the predicting positions (``logits[:, :-1]``) of the whole padded sequence, as
    the code does for ME+GD (no question mask).
    """
    vocab = logits.shape[-1]
    log_q = (logits.softmax(-1) + CODE_ME_EPSILON).log()
    kl = (-math.log(vocab) - log_q).sum(-1) / vocab  # Σ_v (1/V)(log(1/V) − log q_v)
    if mask is None:
        return kl.mean()
    mask = mask.to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def kl_to_reference_code(logits: torch.Tensor, reference_logits: torch.Tensor) -> torch.Tensor:
    """KL as the closer-look public code computes it: KL(p_ref ‖ p_θ) summed over the vocabulary
    and averaged over every position of the padded batch (question, answer, padding; no shift),
    in the logits' own dtype."""
    logp = logits.log_softmax(-1)
    ref_logp = reference_logits.log_softmax(-1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    return kl.mean()


def kl_to_reference(
    logits: torch.Tensor, reference_logits: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """KL(p_ref ‖ p_θ) per position, averaged over the masked positions."""
    logp = logits.float().log_softmax(-1)
    ref_logp = reference_logits.float().log_softmax(-1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    mask = mask.to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def predictive_entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of the next-token distribution over masked positions."""
    logp = logits.float().log_softmax(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    mask = mask.to(entropy.dtype)
    return (entropy * mask).sum() / mask.sum().clamp(min=1)
