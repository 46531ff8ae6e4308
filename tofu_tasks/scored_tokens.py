"""Which tokens of an answer are scored, and how to get exactly those through lm-eval.

TOFU, the closer-look code and open-unlearning score an answer by teacher forcing on
``tokenize(prompt + answer) + [EOS]`` with the first ``len(tokenize(prompt))`` positions masked:

* the EOS after the answer is scored and counted;
* the split is positional: whitespace at the end of the prompt (the ``\\n`` of the phi format, the
  newline that ends a chat template) belongs to the prompt, and where the tokenizer glues the
  prompt's last characters to the first answer word (open-unlearning's ``"Answer: "`` template)
  that first answer token is not scored.

lm-eval's ``loglikelihood(context, continuation)`` instead moves the context's trailing whitespace
into the continuation and scores ``tokenize(context + continuation)[len(tokenize(stripped
context)):]``. A task therefore asks for two log-likelihoods per answer when the prompt ends in
whitespace: ``(prompt, answer + EOS)`` and ``(stripped prompt, boundary)``, where ``boundary`` is
the text of the extra positions lm-eval would score; the difference is the log-likelihood of
exactly TOFU's tokens. Any backend (``hf``, ``hf-unlearn``, ``vllm``) gives it, as each scores
strings the same way.

>>> from transformers import AutoTokenizer                       # doctest: +SKIP
>>> span = tofu_span(tokenizer, "Question: Who?\\nAnswer: ", "Paris", "</s>")  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCORED_TOKENS = ("tofu", "answer-only")


@dataclass(frozen=True)
class ScoredSpan:
    """How one answer is scored.

    count: the number of scored tokens (answer tokens after the prompt's positions, plus EOS).
    boundary: the text after the stripped prompt whose tokens lm-eval would score in addition
    (None when the prompt has no trailing whitespace); its log-likelihood given the stripped
    prompt is subtracted.
    exact: whether tokenizing ``stripped prompt + boundary`` gives the very prompt positions of
    the whole sequence (always true for tokenizers that do not merge across the boundary).
    """

    count: int
    boundary: str | None
    exact: bool = True


def _starts_with_bos(tokenizer: Any, text: str) -> bool:
    bos = getattr(tokenizer, "bos_token", None)
    return bool(bos) and text.startswith(bos)


def backend_encode(tokenizer: Any, text: str, add_bos: bool | None = None, offsets: bool = False):
    """Token ids (and character offsets) as lm-eval's hf backend encodes a string: the
    tokenizer's own special-token default, or ``add_bos_token`` when given, and no second BOS
    when the text already starts with one."""
    kwargs: dict[str, Any] = {} if add_bos is None else {"add_special_tokens": bool(add_bos)}
    if add_bos is None and _starts_with_bos(tokenizer, text):
        kwargs["add_special_tokens"] = False
    if offsets:
        encoded = tokenizer(text, return_offsets_mapping=True, **kwargs)
        return list(encoded["input_ids"]), list(encoded["offset_mapping"])
    return list(tokenizer(text, **kwargs)["input_ids"])


def eos_text(tokenizer: Any) -> str:
    """The EOS token as text, which the tokenizer must read back as the EOS id."""
    eos = getattr(tokenizer, "eos_token", None)
    if not eos:
        raise ValueError(
            "the tokenizer has no EOS token, so the EOS after each answer cannot be scored; "
            'set --metadata \'{"scored_tokens": "answer-only"}\' to score the answer alone'
        )
    ids = list(tokenizer(eos, add_special_tokens=False)["input_ids"])
    if ids != [tokenizer.eos_token_id]:
        raise ValueError(
            f"the tokenizer does not read its EOS text {eos!r} back as one EOS token ({ids}); "
            'set --metadata \'{"scored_tokens": "answer-only"}\' to score the answer alone'
        )
    return eos


def tofu_span(
    tokenizer: Any, prompt: str, answer: str, eos: str, add_bos: bool | None = None
) -> ScoredSpan:
    """The scored tokens of ``answer`` after ``prompt`` by TOFU's positional rule."""
    whole_text = prompt + answer + eos
    prompt_length = len(backend_encode(tokenizer, prompt, add_bos))
    stripped = prompt.rstrip()
    try:
        whole, offsets = backend_encode(tokenizer, whole_text, add_bos, offsets=True)
    except (NotImplementedError, TypeError, ValueError):  # a slow tokenizer: no offsets
        whole, offsets = backend_encode(tokenizer, whole_text, add_bos), None
    count = len(whole) - prompt_length
    if count < 1:
        raise ValueError(f"no answer tokens after the prompt {prompt[-40:]!r}")
    if stripped == prompt:
        return ScoredSpan(count, None)
    stripped_length = len(backend_encode(tokenizer, stripped, add_bos))
    if stripped_length >= prompt_length:
        return ScoredSpan(count, None, exact=stripped_length == prompt_length)
    if offsets is not None:
        end = offsets[prompt_length - 1][1]
        boundary = whole_text[len(stripped) : end]
    else:
        boundary = tokenizer.decode(whole[stripped_length:prompt_length])
    exact = bool(boundary) and (
        backend_encode(tokenizer, stripped + boundary, add_bos) == whole[:prompt_length]
    )
    return ScoredSpan(count, boundary or None, exact)
