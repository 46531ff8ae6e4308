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
    token_ids: tuple[int, ...] = ()  # the scored tokens' ids, EOS last


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
    ids = tuple(whole[prompt_length:])
    if stripped == prompt:
        return ScoredSpan(count, None, token_ids=ids)
    stripped_length = len(backend_encode(tokenizer, stripped, add_bos))
    if stripped_length >= prompt_length:
        return ScoredSpan(count, None, exact=stripped_length == prompt_length, token_ids=ids)
    if offsets is not None:
        end = offsets[prompt_length - 1][1]
        boundary = whole_text[len(stripped) : end]
    else:
        boundary = tokenizer.decode(whole[stripped_length:prompt_length])
    exact = bool(boundary) and (
        backend_encode(tokenizer, stripped + boundary, add_bos) == whole[:prompt_length]
    )
    return ScoredSpan(count, boundary or None, exact, ids)


def scored_text(tokenizer: Any, span: ScoredSpan, eos_included: bool = True) -> str:
    """The text of the scored tokens without the EOS, decoded as open-unlearning decodes its
    labels (special tokens skipped, no clean-up): what the ZLib attack compresses."""
    ids = list(span.token_ids[:-1] if eos_included else span.token_ids)
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


# ---------------------------------------------------------------------- per-token probes
@dataclass(frozen=True)
class TokenProbe:
    """One log-likelihood request that isolates scored tokens: ``(context, text)`` with
    ``context`` the whole text before them. ``size`` is 1 except where tokens are byte pieces of
    one character (no string ends between them): the probe then covers them together.
    lm-eval moves whitespace at the end of a context into the continuation; ``boundary`` is
    then that whitespace, whose log-likelihood given the stripped context is subtracted (as for
    the answer's boundary). ``exact``: the backend's tokenization of the strings gives the very
    positions of the whole sequence."""

    context: str
    token: str
    boundary: str | None
    exact: bool
    size: int = 1


def token_probes(
    tokenizer: Any, prompt: str, answer: str, eos: str, count: int, add_bos: bool | None = None
) -> list[TokenProbe]:
    """Probes for the first ``count`` scored tokens of ``answer`` after ``prompt`` (TOFU's
    positional rule): per-token log-probs and greedy flags from a backend that returns only a
    sum and an is-greedy flag per request (lm-eval's ``hf`` and ``vllm``). Empty when the
    tokenizer gives no character offsets (a slow tokenizer)."""
    whole_text = prompt + answer + eos
    prompt_length = len(backend_encode(tokenizer, prompt, add_bos))
    try:
        whole, offsets = backend_encode(tokenizer, whole_text, add_bos, offsets=True)
    except (NotImplementedError, TypeError, ValueError):
        return []
    groups = _character_groups(offsets, prompt_length, min(prompt_length + count, len(whole)))
    contexts = [whole_text[: offsets[first][0]] for first, _ in groups]
    texts = [whole_text[offsets[first][0] : offsets[last][1]] for first, last in groups]
    # Exact when the backend's tokenizations of the probe's strings are prefixes of the whole
    # sequence (a merge across the cut is not).
    stripped = [c.rstrip() for c in contexts]
    encoded = _encode_all(
        tokenizer, [*contexts, *(c + t for c, t in zip(contexts, texts, strict=True)), *stripped],
        add_bos,
    )  # fmt: skip
    n = len(groups)
    probes = []
    for i, (first, last) in enumerate(groups):
        boundary = contexts[i][len(stripped[i]) :] or None
        exact = (
            bool(texts[i])
            and encoded[i] == whole[:first]
            and encoded[n + i] == whole[: last + 1]
            and (boundary is None or encoded[2 * n + i] == whole[: len(encoded[2 * n + i])])
        )
        probes.append(TokenProbe(contexts[i], texts[i], boundary, exact, last - first + 1))
    return probes


def _character_groups(offsets: list, start: int, stop: int) -> list[tuple[int, int]]:
    """(first, last) positions of runs of tokens that share characters (byte pieces of one
    character overlap in their offsets); every other token is a run of its own."""
    groups: list[tuple[int, int]] = []
    for position in range(start, stop):
        if groups and offsets[position][0] < offsets[groups[-1][1]][1]:
            groups[-1] = (groups[-1][0], position)
        else:
            groups.append((position, position))
    return groups


def _encode_all(tokenizer: Any, texts: list[str], add_bos: bool | None) -> list[list[int]]:
    return [backend_encode(tokenizer, text, add_bos) for text in texts]
