"""``hf-unlearn``: lm-eval's ``hf`` backend, faster on the request shapes of unlearning evaluation.

A TOFU-style evaluation asks, per question, for one greedy generation and several log-likelihoods of
different answers after the same prompt. lm-eval's ``hf`` backend serves each request alone. This
backend keeps everything of ``hf`` (model loading, ``peft=``, ``dtype``, devices, chat templates,
``batch_size``) and changes how two kinds of request are computed:

* log-likelihood: requests that share a context are scored together. The context runs through
  the model once and its key/value cache serves every continuation; the continuations run as one
  prefix tree (answers that begin alike feed their common beginning once, each token attending
  to the context and its own prefix through a custom attention mask); the vocabulary projection
  runs only where a continuation token is predicted. ``batch_size`` counts continuations per
  pass, as in ``hf``.
* greedy generation: rows decode in batches of ``gen_batch_size`` (default ``auto``: 64 on CPU;
  on a GPU as many as half the free memory holds as key/value cache, at most 256), a row leaves
  the batch as soon as it ends (EOS, a stop string or its token budget), and each pass also
  verifies up to ``prompt_lookup_tokens`` (default 3) draft tokens per row copied from earlier in
  the row (prompt-lookup decoding), so repetitive outputs need fewer passes.

Attention schemes: custom masks replace the mask a model builds itself, so prefix trees serve
only plain causal attention (or a sliding window no input reaches); ALiBi and sliding-window
models score one row per continuation on the shared context, and sliding-window models decode
without drafts where rejected drafts could shift the window. Models with other kinds of layers
(chunked or linear attention, state-space layers) go through ``hf``'s own code.

The numbers are those of ``hf`` up to float rounding: the same greedy tokens, log-likelihoods
within ~1e-5 in float32 (in bfloat16 within a spacing of ``hf``'s sum, which it rounds to
bfloat16). Requests this backend does not speed up (sampling, beam search, seq2seq models,
prompt-tuning adapters, models without ``position_ids``, contexts longer than the model,
generation configs with logit processors such as a repetition penalty) go through ``hf``'s own
code. Use it as ``lm_eval --model hf-unlearn --model_args pretrained=...``; model args
``share_context=false`` and ``prompt_lookup_tokens=0`` switch the two speed-ups off.

Each shared-context log-likelihood result is a ``(sum, is_greedy)`` pair as in ``hf`` that also
carries, per continuation token, what the membership-inference and memorisation metrics need
(:class:`ScoredContinuation`): its log-prob, the mean and variance of the log-prob under the
model's next-token distribution, and whether it is the argmax. They come from the same pass.
"""

from __future__ import annotations

import inspect
import logging

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from harness_ext.lm_eval_plugin import DEFAULT_BACKEND
from harness_ext.lm_eval_plugin.forward_inputs import has_virtual_tokens
from harness_ext.lm_eval_plugin.greedy_decoding import (
    DEFAULT_PROMPT_LOOKUP_TOKENS,
    BatchedGreedyDecoding,
)
from harness_ext.lm_eval_plugin.shared_context import AttentionScheme, SharedContextScoring

logger = logging.getLogger("lm-unlearn")

MODEL_NAME = DEFAULT_BACKEND


@register_model(MODEL_NAME)
class UnlearnHFLM(SharedContextScoring, BatchedGreedyDecoding, HFLM):
    """The ``hf`` backend with shared-context log-likelihoods and early-exit greedy decoding.

    Extra model args: ``gen_batch_size`` (rows decoded together; ``auto`` by default),
    ``share_context`` (``false`` scores each log-likelihood request alone, as ``hf`` does) and
    ``prompt_lookup_tokens`` (draft tokens verified per row and pass; 0 turns drafts off).
    """

    def __init__(
        self,
        *args,
        gen_batch_size: int | str = "auto",
        share_context: bool = True,
        prompt_lookup_tokens: int = DEFAULT_PROMPT_LOOKUP_TOKENS,
        **kwargs,
    ) -> None:
        self.prompt_lookup_tokens = _count_arg("prompt_lookup_tokens", prompt_lookup_tokens, 0)
        self.gen_batch_size = (
            "auto"
            if str(gen_batch_size) == "auto"
            else _count_arg("gen_batch_size", gen_batch_size, 1)
        )
        super().__init__(*args, **kwargs)
        self.share_context = str(share_context).lower() not in ("false", "0", "no")
        self.share_prefixes = self.share_context
        self._forward_names: frozenset[str] | None = None
        self._head_on_hidden: bool | None = None
        self._scheme: AttentionScheme | None = None

    # ------------------------------------------------------------------ log-likelihood
    def gives_token_scores(self) -> bool:
        """Whether log-likelihood results carry per-token numbers (``.tokens``): on the
        shared-context path, which every causal model with position ids and a known attention
        scheme takes; the TOFU tasks then ask no per-token requests."""
        return (
            self.share_context
            and self.backend == "causal"
            and "position_ids" in self._forward_parameters()
            and not has_virtual_tokens(self.model)
            and self._attention().known
        )

    # ------------------------------------------------------------------ helpers
    def _cache_argument(self, cache) -> dict:
        """transformers 5.2x names the key/value cache argument ``cache``; earlier versions
        ``past_key_values``."""
        name = "cache" if "cache" in self._forward_parameters() else "past_key_values"
        return {name: cache}

    def _forward_parameters(self) -> frozenset[str]:
        """Argument names of the model's forward (of the base model under a PEFT wrapper)."""
        if self._forward_names is None:
            model = self.model
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            self._forward_names = frozenset(inspect.signature(base.forward).parameters)
        return self._forward_names

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.eot_token_id)

    def _autocast(self):
        return torch.autocast(
            device_type=self.device.type,
            dtype=self.mixed_precision_dtype,
            enabled=self.mixed_precision_dtype is not None,
        )


def _count_arg(name: str, value: int | str, minimum: int) -> int:
    """A whole-number model arg, refused with a clear message when it is not one."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number < minimum or str(number) != str(value).strip():
        raise ValueError(f"model arg {name} must be a whole number >= {minimum}, got {value!r}")
    return number
