"""Which model lm-eval is evaluating, for the tasks that ask it what it can return.

lm-eval hands a task its model only with ``--apply_chat_template``. The TOFU tasks need to know
whether the backend returns per-token numbers (``hf-unlearn`` does, lm-eval's ``hf`` and
``vllm`` do not): only then can they leave out the one-request-per-token log-likelihoods that
the per-token metrics otherwise need. ``install`` wraps ``lm_eval.evaluator.evaluate`` (once) so
that the model being evaluated is known to the code it calls, in a context variable.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Any

_CURRENT: contextvars.ContextVar[Any] = contextvars.ContextVar("lm_unlearn_model", default=None)


def install() -> None:
    """Wrap lm-eval's ``evaluate`` so that ``current()`` is its model while it runs."""
    import lm_eval.evaluator as evaluator

    original = evaluator.evaluate
    if getattr(original, "_lm_unlearn_wrapped", False):
        return

    @functools.wraps(original)
    def evaluate(*args, **kwargs):
        lm = kwargs.get("lm", args[0] if args else None)
        token = _CURRENT.set(lm)
        try:
            return original(*args, **kwargs)
        finally:
            _CURRENT.reset(token)

    evaluate._lm_unlearn_wrapped = True
    evaluator.evaluate = evaluate


def current() -> Any:
    """The model lm-eval is evaluating now (None outside ``evaluate``), unwrapped from lm-eval's
    request cache."""
    lm = _CURRENT.get()
    return getattr(lm, "lm", lm) if type(lm).__name__ == "CachingLM" else lm


def gives_token_scores(lm: Any = None) -> bool:
    """Whether the model (default: the one being evaluated) says it returns per-token numbers
    with its log-likelihoods; False when it does not say, or no model is known."""
    lm = current() if lm is None else lm
    says = getattr(lm, "gives_token_scores", None)
    return bool(says()) if callable(says) else False
