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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from lm_eval.api.instance import Instance
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import (
    handle_stop_sequences,
    normalize_gen_kwargs,
    postprocess_generated_text,
)
from tqdm import tqdm

from harness_ext.lm_eval_plugin import DEFAULT_BACKEND

logger = logging.getLogger("lm-unlearn")

MODEL_NAME = DEFAULT_BACKEND
MAX_AUTO_GEN_BATCH = 256
CPU_AUTO_GEN_BATCH = 64  # decoding throughput on CPU stops growing around here
# Generation-config entries that leave greedy decoding unchanged; any other setting (repetition
# penalty, banned words, minimum length, ...) means hf's generate must handle the request.
GREEDY_NEUTRAL_CONFIG = {
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "decoder_start_token_id",
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "typical_p",
    "max_length",
    "max_new_tokens",
    "use_cache",
    "cache_implementation",
    "output_attentions",
    "output_hidden_states",
    "output_scores",
    "output_logits",
    "return_dict_in_generate",
    "transformers_version",
    "_from_model_config",
}
DEFAULT_PROMPT_LOOKUP_TOKENS = 3
LOOKUP_NGRAMS = 3  # longest n-gram matched for prompt-lookup drafts
FIRST_DRAFT_LENGTH = 2  # then adapted per row to how much of its drafts is accepted
# Tokens a decoding pass may feed, drafts and padding included, before drafts are cut: on CPU a
# pass stops being bound by reading the weights at a few dozen tokens (2 cores: 16 rows reach 65%
# of the float32 matmul peak, 64 rows 94%); a GPU has room for far more.
DRAFT_PASS_TOKENS = {"cpu": 32, "cuda": 1024}
GREEDY_KWARGS = {"until", "max_gen_toks", "do_sample", "temperature"}
# Layer kinds whose keys and values this backend's cache bookkeeping (left padding, rows leaving
# the batch, masked holes) is checked against hf for; models with any other kind use hf's code.
KNOWN_LAYER_TYPES = {"full_attention", "sliding_attention"}


class ScoredContinuation(tuple):
    """``(sum of log-probs, all greedy)`` plus ``tokens``: per continuation token,
    ``(log-prob, mean log-prob under the model's distribution, its variance, is argmax)``."""

    tokens: list[tuple[float, float, float, bool]]

    def __new__(cls, total: float, greedy: bool, tokens: list[tuple[float, float, float, bool]]):
        scored = super().__new__(cls, (total, greedy))
        scored.tokens = tokens
        return scored

    def __reduce__(self):  # a pickled result (lm-eval's request cache) keeps its tokens
        return ScoredContinuation, (self[0], self[1], self.tokens)


# The result of a per-token request that was not run: the per-token numbers came with the answer.
PROBE_NOT_NEEDED = (float("nan"), False)


def _token_statistics(
    log_probs: torch.Tensor, wanted: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per predicted position: mean and variance of log p under p, and whether ``wanted`` is
    the argmax. Log-probs are floored at -1e4 (a probability of exactly 0 in float32), so
    tokens a model rules out (-inf) add 0 rather than NaN."""
    floored = log_probs.clamp_min(-1e4)
    weighted = floored.exp().mul_(floored)  # p · log p, in one buffer
    expected = weighted.sum(-1)
    second = torch.linalg.vecdot(weighted, floored)  # Σ p · (log p)²
    return expected, (second - expected.square()).clamp_min(0), log_probs.argmax(-1) == wanted


@dataclass(frozen=True)
class _AttentionScheme:
    """What the attention of a model's layers needs from the masks this backend passes.

    ``window``: the shortest sliding window of any layer (None: every layer sees all earlier
    tokens); ``alibi``: position biases computed from the 2D attention mask; ``known``: every
    layer is softmax attention over a key/value cache, full or sliding.
    """

    window: int | None = None
    alibi: bool = False
    known: bool = True

    def window_covers(self, span: int) -> bool:
        """Whether a sequence of ``span`` tokens (and cache entries) lies inside every window."""
        return self.window is None or span < self.window


@dataclass
class _GenerationRow:
    """One greedy generation request while it decodes.

    With ``lookup_ngrams`` > 0 it indexes every n-gram (n <= lookup_ngrams) of its prompt and
    output by where it last ended, for prompt-lookup drafts.
    """

    index: int
    context: list[int]
    budget: int
    stops: list[str]
    lookup_ngrams: int = 0
    draft_length: int = 0
    stop_window: int = 0  # last tokens decoded to look for stop strings; 0: none to look for
    tokens: list[int] = field(default_factory=list)
    _history: list[int] = field(default_factory=list)
    _followers: dict[tuple[int, ...], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.lookup_ngrams:
            for token in self.context:
                self._index(token)

    def push(self, token: int) -> None:
        self.tokens.append(token)
        if self.lookup_ngrams:
            self._index(token)

    def _index(self, token: int) -> None:
        # The n-grams ending at the current last token now have a follower: the new token.
        history = self._history
        for n in range(1, min(self.lookup_ngrams, len(history)) + 1):
            self._followers[tuple(history[-n:])] = len(history)
        history.append(token)

    def adapt_draft_length(self, accepted: int, drafted: int, longest: int) -> None:
        """Longer drafts while they are accepted whole, shorter after a rejection."""
        if drafted:
            grown = self.draft_length + 2 if accepted == drafted else self.draft_length - 1
            self.draft_length = max(1, min(longest, grown))

    def lookup(self, count: int) -> list[int]:
        """Up to ``count`` tokens that followed the longest earlier match of the last n-gram."""
        history = self._history
        for n in range(min(self.lookup_ngrams, len(history)), 0, -1):
            start = self._followers.get(tuple(history[-n:]))
            if start is not None:
                return history[start : start + count]
        return []


@register_model(MODEL_NAME)
class UnlearnHFLM(HFLM):
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
        self._scheme: _AttentionScheme | None = None

    # ------------------------------------------------------------------ log-likelihood
    def gives_token_scores(self) -> bool:
        """Whether log-likelihood results carry per-token numbers (``.tokens``): on the
        shared-context path, which every causal model with position ids and a known attention
        scheme takes; the TOFU tasks then ask no per-token requests."""
        return (
            self.share_context
            and self.backend == "causal"
            and "position_ids" in self._forward_parameters()
            and not _has_virtual_tokens(self.model)
            and self._attention().known
        )

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """lm-eval's log-likelihoods. Requests a task marks ``token_probe`` (one per answer
        token, for backends without per-token numbers) are answered only when the other
        results lack those numbers: this backend's results carry them (``.tokens``)."""
        probes = [bool(getattr(r, "token_probe", False)) for r in requests]
        if not any(probes):
            return super().loglikelihood(requests, disable_tqdm)
        kept = [r for r, probe in zip(requests, probes, strict=True) if not probe]
        scored = super().loglikelihood(kept, disable_tqdm) if kept else []
        if all(isinstance(result, ScoredContinuation) for result in scored):
            answers = iter(scored)
            return [PROBE_NOT_NEEDED if probe else next(answers) for probe in probes]
        probe_requests = [r for r, probe in zip(requests, probes, strict=True) if probe]
        probed = iter(super().loglikelihood(probe_requests, disable_tqdm))
        answers = iter(scored)
        return [next(probed) if probe else next(answers) for probe in probes]

    def _loglikelihood_tokens(
        self,
        requests: list[tuple[tuple[str, str], list[int], list[int]]],
        disable_tqdm: bool = False,
        override_bs: int | None = None,
    ) -> list[tuple[float, bool]]:
        if not self._can_share_context(requests):
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, (_, context, _) in enumerate(requests):
            groups.setdefault(tuple(context), []).append(index)

        def longest_first(item: tuple[tuple[int, ...], list[int]]) -> int:
            return -(len(item[0]) + max(len(requests[i][2]) for i in item[1]))

        ordered = sorted(groups.items(), key=longest_first)
        rows = self._loglikelihood_batch_rows(override_bs, requests)
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        bar = tqdm(
            total=len(requests),
            disable=disable_tqdm or self.rank != 0,
            desc="Running loglikelihood requests (shared contexts)",
        )
        for batch in _pack_groups(ordered, rows):
            contexts = [list(context) for context, _ in batch]
            members = [indices for _, indices in batch]
            continuations = [[requests[i][2] for i in indices] for indices in members]
            scores = self._score_shared_contexts(contexts, continuations)
            for index, score in zip((i for ids in members for i in ids), scores, strict=True):
                results[index] = score
                request_key = requests[index][0]
                if request_key is not None:
                    self.cache_hook.add_partial("loglikelihood", request_key, score)
            bar.update(len(scores))
        bar.close()
        return results  # type: ignore[return-value]

    def _can_share_context(self, requests: Sequence) -> bool:
        if not self.share_context or self.backend != "causal" or not requests:
            return False
        if "position_ids" not in self._forward_parameters():
            return False
        if _has_virtual_tokens(self.model) or not self._attention().known:
            return False
        return all(
            context and continuation and len(context) + len(continuation) <= self.max_length
            for _, context, continuation in requests
        )

    def _loglikelihood_batch_rows(self, override_bs: int | None, requests: Sequence) -> int:
        if self.batch_size != "auto":
            return int(self.batch_size)
        if override_bs:
            return int(override_bs)
        if self.device.type == "cpu":
            return int(self.max_batch_size)
        # hf's probe runs full forward passes of the longest request: a safe bound here
        longest = max(requests, key=lambda request: len(request[1]) + len(request[2]))
        return int(self._detect_batch_size([longest]))

    def _score_shared_contexts(
        self, contexts: list[list[int]], continuations: list[list[list[int]]]
    ) -> list[ScoredContinuation]:
        """(sum of log-probs, all greedy) of each continuation after its group's context.

        The contexts run once. The continuations of a group then run as one prefix tree (a
        token shared by several answers' beginnings is fed once; each token attends to its
        context and its own prefix) or, where custom attention masks are not supported, as one
        row each. Logits are computed only where a continuation token is predicted.
        """
        targets = [c for group in continuations for c in group]
        counts = torch.tensor([len(c) for c in continuations], device=self.device)
        group_of_row = torch.repeat_interleave(
            torch.arange(len(contexts), device=self.device), counts
        )
        context_ids, context_mask = _pad(contexts, self._pad_id(), side="left", device=self.device)
        with torch.no_grad(), self._autocast():
            prefill = self.model(
                input_ids=context_ids,
                attention_mask=context_mask,
                position_ids=_positions(context_mask),
                use_cache=True,
                logits_to_keep=1,
            )
            # The last context position predicts each continuation's first token.
            pieces = [
                (
                    prefill.logits[:, -1][group_of_row],
                    torch.arange(len(targets), device=self.device),
                    torch.tensor([t[0] for t in targets], device=self.device),
                )
            ]
            if max(len(t) for t in targets) > 1:
                cache = _returned_cache(prefill)
                longest = max(
                    len(context) + len(target)
                    for context, group in zip(contexts, continuations, strict=True)
                    for target in group
                )
                if self._tree_attention_works(longest):
                    pieces.append(self._score_as_trees(cache, context_mask, continuations))
                else:
                    cache.batch_select_indices(group_of_row)
                    pieces.append(self._score_as_rows(cache, context_mask[group_of_row], targets))
        logits, rows, wanted = (torch.cat(part) for part in zip(*pieces, strict=True))
        log_probs = F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)
        picked = log_probs.gather(-1, wanted[:, None]).squeeze(-1).double()
        expected, variance, greedy = _token_statistics(log_probs, wanted)
        sums = torch.zeros(len(targets), dtype=picked.dtype, device=self.device)
        sums.index_add_(0, rows, picked)
        # tokens in continuation order: each row's first token comes first in ``rows``, the
        # others follow in order, so a stable sort by row lines them up
        order = torch.sort(rows, stable=True).indices
        table = torch.stack([picked, expected.double(), variance.double(), greedy.double()], 1)
        per_token = table[order].tolist()
        results, start = [], 0
        for total, target in zip(sums.tolist(), targets, strict=True):
            end = start + len(target)
            tokens = [(lp, mu, var, bool(g)) for lp, mu, var, g in per_token[start:end]]
            results.append(ScoredContinuation(total, all(t[3] for t in tokens), tokens))
            start = end
        return results

    def _score_as_rows(
        self, cache, context_mask: torch.Tensor, targets: list[list[int]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, row, predicted token) after the first token, one padded row per target."""
        inputs, inputs_mask = _pad([t[:-1] for t in targets], self._pad_id(), "right", self.device)
        steps = torch.arange(inputs.shape[1], device=self.device)
        out = self._forward_on_cache(
            cache,
            input_ids=inputs,
            attention_mask=torch.cat([context_mask, inputs_mask], dim=1),
            position_ids=context_mask.sum(1)[:, None] + steps,
        )
        real = inputs_mask.bool()
        rows = real.nonzero()[:, 0]
        wanted = torch.tensor([tok for t in targets for tok in t[1:]], device=self.device)
        return self._logits_where(out, real), rows, wanted

    def _score_as_trees(
        self, cache, context_mask: torch.Tensor, continuations: list[list[list[int]]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, row, predicted token) after the first token, one prefix tree per group."""
        trees = [_PrefixTree([c[:-1] for c in group]) for group in continuations]
        groups, context_width = context_mask.shape
        width = max(len(tree.tokens) for tree in trees)
        dtype = self._activation_dtype()
        blocked = torch.finfo(dtype).min
        inputs = torch.full((groups, width), self._pad_id(), dtype=torch.long)
        positions = torch.zeros((groups, width), dtype=torch.long)
        visible = torch.zeros((groups, width, context_width + width), dtype=torch.bool)
        visible[:, :, :context_width] = context_mask.bool().cpu()[:, None, :]
        visible[:, range(width), [context_width + i for i in range(width)]] = True  # pads too
        context_lengths = context_mask.sum(1).tolist()
        for g, tree in enumerate(trees):
            n = len(tree.tokens)
            inputs[g, :n] = torch.tensor(tree.tokens)
            positions[g, :n] = context_lengths[g] + torch.tensor(tree.depths)
            visible[g, :n, context_width : context_width + n] = tree.ancestry()
        mask = torch.zeros(visible.shape, dtype=dtype).masked_fill_(~visible, blocked)
        out = self._forward_on_cache(
            cache,
            input_ids=inputs.to(self.device),
            attention_mask=mask[:, None].to(self.device),
            position_ids=positions.to(self.device),
        )
        where_group, where_node, wanted = [], [], []
        for g, (tree, group) in enumerate(zip(trees, continuations, strict=True)):
            for path, target in zip(tree.paths, group, strict=True):
                where_group += [g] * len(path)
                where_node += path
                wanted += target[1:]
        rows = torch.repeat_interleave(
            torch.arange(sum(len(group) for group in continuations)),
            torch.tensor([len(t) - 1 for group in continuations for t in group]),
        )
        where = (torch.tensor(where_group), torch.tensor(where_node))
        return (
            self._logits_where(out, where),
            rows.to(self.device),
            torch.tensor(wanted, dtype=torch.long, device=self.device),
        )

    def _forward_on_cache(self, cache, **inputs):
        """A forward pass after the cached contexts; logits left to ``_logits_where``."""
        head_only = self._head_applies_to_last_hidden_state()
        return self.model(
            use_cache=True,
            **inputs,
            **self._cache_argument(cache),
            **({"output_hidden_states": True, "logits_to_keep": 1} if head_only else {}),
        )

    def _logits_where(self, output, where) -> torch.Tensor:
        if self._head_applies_to_last_hidden_state():
            return self.model.get_output_embeddings()(output.hidden_states[-1][where])
        return output.logits[where]

    def _tree_attention_works(self, longest: int | None = None) -> bool:
        """Whether a custom 4D attention mask gives the model's own attention here.

        Such a mask reaches the attention of sdpa and eager implementations and replaces the mask
        the model would build. That is only right for plain causal attention: an ALiBi model
        derives its position biases from a 2D mask, and a sliding-window model both masks tokens
        beyond its window and keeps only a window of keys in its cache (trees would see the whole
        context, or keys the cache dropped). A sliding window still allows trees when the longest
        request (``longest`` tokens of context plus continuation, padding included in the cache)
        fits inside it; without ``longest``, only models without a window qualify. Otherwise
        the continuations run as one row each, on masks the model builds itself.
        """
        if not self.share_prefixes:
            return False
        implementation = getattr(self.model.config, "_attn_implementation", None)
        if implementation not in ("sdpa", "eager"):
            return False
        scheme = self._attention()
        if scheme.alibi or not scheme.known:
            return False
        return scheme.window is None or (longest is not None and scheme.window_covers(longest))

    def _attention(self) -> _AttentionScheme:
        if self._scheme is None:
            self._scheme = _attention_scheme(self.model.config)
        return self._scheme

    def _activation_dtype(self) -> torch.dtype:
        if self.mixed_precision_dtype is not None:
            return self.mixed_precision_dtype
        return next(self.model.parameters()).dtype

    def _head_applies_to_last_hidden_state(self) -> bool:
        """Whether logits are the output embedding of the last hidden state (checked once).

        Then the vocabulary projection can run on chosen positions only. Models that post-process
        logits (soft-capping, scaling) fail the check and keep full logits.
        """
        if self._head_on_hidden is None:
            head = self.model.get_output_embeddings()
            probe = torch.full((1, 2), self.eot_token_id, device=self.device)
            with torch.no_grad(), self._autocast():
                out = self.model(input_ids=probe, output_hidden_states=True)
                hidden = out.hidden_states[-1] if out.hidden_states else None
                self._head_on_hidden = bool(
                    head is not None
                    and hidden is not None
                    and torch.allclose(
                        head(hidden).float(), out.logits.float(), rtol=1e-4, atol=1e-5
                    )
                )
        return self._head_on_hidden

    # ------------------------------------------------------------------ generation
    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        model_ok = self._model_decodes_plain_greedy()
        fast = [i for i, r in enumerate(requests) if model_ok and self._is_plain_greedy(r.args[1])]
        slow = sorted(set(range(len(requests))) - set(fast))
        results: list[str | None] = [None] * len(requests)
        if slow:
            done = super().generate_until([requests[i] for i in slow], disable_tqdm)
            for index, text in zip(slow, done, strict=True):
                results[index] = text
        if fast:
            done = self._greedy_generate([requests[i].args for i in fast], disable_tqdm)
            for index, text in zip(fast, done, strict=True):
                results[index] = text
        return results  # type: ignore[return-value]

    def _model_decodes_plain_greedy(self) -> bool:
        """Whether this model's greedy decoding is what ``_decode_batch`` does (per run)."""
        if self.backend != "causal" or self.think_end_token is not None:
            return False
        if "position_ids" not in self._forward_parameters() or not self._attention().known:
            return False
        return not _has_virtual_tokens(self.model) and _greedy_config_is_neutral(self.model)

    def _is_plain_greedy(self, gen_kwargs: dict) -> bool:
        """Whether a request asks for plain greedy decoding within the model's context."""
        if not isinstance(gen_kwargs, dict) or set(gen_kwargs) - GREEDY_KWARGS:
            return False
        kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
        return kwargs["do_sample"] is False and kwargs["max_gen_toks"] < self.max_length

    def _greedy_generate(self, args: list[tuple[str, dict]], disable_tqdm: bool) -> list[str]:
        if not args:
            return []
        eos_text = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        prompts = []
        for context, gen_kwargs in args:
            kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
            stops = handle_stop_sequences(kwargs.get("until"), eos=eos_text)
            budget = int(kwargs["max_gen_toks"])
            ids = self.tok_encode(context, left_truncate_len=self.max_length - budget)
            prompts.append((ids, budget, stops))
        drafts = self._draft_tokens(
            max(len(ids) for ids, _, _ in prompts), max(budget for _, budget, _ in prompts)
        )
        ngrams = LOOKUP_NGRAMS if drafts > 0 else 0
        first_draft = min(FIRST_DRAFT_LENGTH, drafts)
        rows = [
            _GenerationRow(index, ids, budget, stops, ngrams, first_draft, self._stop_window(stops))
            for index, (ids, budget, stops) in enumerate(prompts)
        ]
        # Similar prompt lengths together: less left padding.
        rows.sort(key=lambda row: (-len(row.context), row.index))
        results: list[str] = [""] * len(rows)
        bar = tqdm(
            total=len(rows),
            disable=disable_tqdm or self.rank != 0,
            desc="Running generate_until requests (greedy, early exit)",
        )
        size = self._generation_batch_rows(rows)
        for start in range(0, len(rows), size):
            batch = rows[start : start + size]
            self._decode_batch(batch, bar)
            for row in batch:
                text = postprocess_generated_text(self.tok_decode(row.tokens), row.stops, None)
                results[row.index] = text
                self.cache_hook.add_partial("generate_until", args[row.index], text)
        bar.close()
        return results

    def _draft_tokens(self, longest_prompt: int, largest_budget: int) -> int:
        """Draft tokens per row and pass: ``prompt_lookup_tokens``, or 0 where drafts could
        change a sliding-window model's choices.

        Rejected drafts and the right padding of shorter drafts stay in the cache as masked
        holes. Causal masks and ALiBi (which counts only unmasked tokens) skip them, but a
        sliding window is measured in cache entries: holes would push real tokens out of it.
        Drafts stay on when the widest cache (longest prompt plus, per pass, one token and the
        drafts) fits inside the window; without drafts, rows have left padding only.
        """
        lookup = self.prompt_lookup_tokens
        widest = longest_prompt + largest_budget * (1 + lookup)
        return lookup if lookup > 0 and self._attention().window_covers(widest) else 0

    def _generation_batch_rows(self, rows: list[_GenerationRow]) -> int:
        if self.gen_batch_size != "auto":
            return self.gen_batch_size
        if self.device.type != "cuda":
            return CPU_AUTO_GEN_BATCH
        longest = max(len(r.context) + r.budget for r in rows)
        free, _total = torch.cuda.mem_get_info(self.device)
        per_row = longest * _kv_bytes_per_token(self.model) + 4 * self.model.config.vocab_size
        return max(1, min(MAX_AUTO_GEN_BATCH, int(0.5 * free / max(per_row, 1))))

    def _decode_batch(self, batch: list[_GenerationRow], bar: tqdm) -> None:
        """Greedy decoding of a batch; finished rows leave the batch and its cache.

        With ``prompt_lookup_tokens`` > 0 each pass also checks up to that many draft tokens per
        row, copied from what followed the row's last tokens where they occurred before in its
        prompt or output (prompt-lookup decoding). One forward pass scores the drafts; the row
        keeps the drafts equal to its greedy choices plus one greedy token, and rejected drafts
        stay in the cache as masked holes. Repetitive outputs need far fewer passes.
        """
        stop_ids = self._stop_token_ids()
        pad = self._pad_id()
        ids, mask = _pad([r.context for r in batch], pad, "left", self.device)
        positions = _positions(mask)
        active = list(batch)
        with torch.no_grad(), self._autocast():
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                logits_to_keep=1,
            )
            cache = _returned_cache(out)
            next_position = positions[:, -1] + 1  # where each row's newest token goes
            greedy = out.logits[:, -1:].argmax(-1).tolist()
            drafts: list[list[int]] = [[] for _ in active]
            fed_width = 0  # mask columns of the last pass's fed tokens (none after the prefill)
            while True:
                keep, advance = [], []
                for j, row in enumerate(active):
                    n_ok = _matching_prefix(drafts[j], greedy[j])
                    if fed_width:  # hide the rejected drafts from later passes
                        mask[j, mask.shape[1] - fed_width + 1 + n_ok :] = 0
                    row.adapt_draft_length(n_ok, len(drafts[j]), self.prompt_lookup_tokens)
                    new_tokens = [*drafts[j][:n_ok], greedy[j][n_ok]]
                    if not any(self._append(row, t, stop_ids) for t in new_tokens):
                        keep.append(j)
                        advance.append(n_ok + 1 if fed_width else 0)
                bar.update(len(active) - len(keep))
                if not keep:
                    return
                if len(keep) < len(active):
                    selected = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(selected)
                    mask, next_position = mask[selected], next_position[selected]
                    active = [active[j] for j in keep]
                next_position = next_position + torch.tensor(advance, device=self.device)
                drafts = self._capped([self._draft(row) for row in active])
                fed = [[row.tokens[-1], *draft] for row, draft in zip(active, drafts, strict=True)]
                inputs, fed_mask = _pad(fed, pad, "right", self.device)
                mask = torch.cat([mask, fed_mask], dim=1)
                fed_width = inputs.shape[1]
                steps = torch.arange(fed_width, device=self.device)
                out = self.model(
                    input_ids=inputs,
                    attention_mask=mask,
                    position_ids=next_position[:, None] + steps,
                    use_cache=True,
                    **self._cache_argument(cache),
                )
                greedy = out.logits.argmax(-1).tolist()

    def _capped(self, drafts: list[list[int]]) -> list[list[int]]:
        """Drafts cut so that a pass feeds at most ``DRAFT_PASS_TOKENS`` tokens (rows × the
        widest row, padding included), where the device has them to spare: a pass of a few rows
        is bound by reading the weights, and drafts ride along nearly free; a pass of many rows
        is bound by its matrix products, and every drafted or padded token costs as much as a
        generated one (one long draft would pad every row of the batch to its width)."""
        budget = DRAFT_PASS_TOKENS.get(self.device.type, DRAFT_PASS_TOKENS["cuda"])
        longest = max(0, budget // max(1, len(drafts)) - 1)
        return [draft[:longest] for draft in drafts]

    def _draft(self, row: _GenerationRow) -> list[int]:
        room = row.budget - len(row.tokens) - 1  # a pass adds the drafts and one more token
        if self.prompt_lookup_tokens <= 0 or row.lookup_ngrams <= 0 or room <= 0:
            return []
        return row.lookup(min(row.draft_length, room))

    def _append(self, row: _GenerationRow, token: int, stop_ids: set[int]) -> bool:
        """Add the row's next token; True when the row is finished."""
        row.push(token)
        if token in stop_ids or len(row.tokens) >= row.budget:
            return True
        if not row.stop_window:
            return False
        # A stop string that ends at the new token lies in the last few tokens (as hf checks).
        tail = self.tok_decode(row.tokens[-row.stop_window :], skip_special_tokens=False)
        return any(stop and stop in tail for stop in row.stops)

    def _stop_window(self, stops: list[str]) -> int:
        """Tokens to decode when looking for a stop string: its length plus two, as hf does."""
        lengths = [len(self.tok_encode(s, add_special_tokens=False)) for s in stops if s]
        return max(lengths) + 2 if lengths else 0

    def _stop_token_ids(self) -> set[int]:
        ids = {int(self.eot_token_id)}
        configured = getattr(self.model.generation_config, "eos_token_id", None)
        if configured is not None:
            ids |= {int(i) for i in (configured if isinstance(configured, list) else [configured])}
        return ids

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


class _PrefixTree:
    """The distinct prefixes of some token sequences: each shared beginning is one node path.

    >>> tree = _PrefixTree([[5, 6, 7], [5, 6, 8], [9]])
    >>> tree.tokens, tree.parents, tree.depths, tree.paths
    ([5, 6, 7, 8, 9], [-1, 0, 1, 1, -1], [0, 1, 2, 2, 0], [[0, 1, 2], [0, 1, 3], [4]])
    """

    def __init__(self, sequences: list[list[int]]) -> None:
        self.tokens: list[int] = []
        self.parents: list[int] = []
        self.depths: list[int] = []
        self.paths: list[list[int]] = []
        nodes: dict[tuple[int, int], int] = {}
        for sequence in sequences:
            path, parent = [], -1
            for depth, token in enumerate(sequence):
                node = nodes.get((parent, token))
                if node is None:
                    node = nodes[(parent, token)] = len(self.tokens)
                    self.tokens.append(token)
                    self.parents.append(parent)
                    self.depths.append(depth)
                path.append(node)
                parent = node
            self.paths.append(path)

    def ancestry(self) -> torch.Tensor:
        """(node, other) is True when ``other`` is the node itself or one of its ancestors."""
        n = len(self.tokens)
        seen = torch.zeros((n, n), dtype=torch.bool)
        for node, parent in enumerate(self.parents):  # parents come before their children
            if parent >= 0:
                seen[node] = seen[parent]
            seen[node, node] = True
        return seen


def _matching_prefix(draft: list[int], greedy: list[int]) -> int:
    """How many draft tokens equal the greedy choices made before them."""
    n = 0
    while n < len(draft) and draft[n] == greedy[n]:
        n += 1
    return n


def _returned_cache(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _count_arg(name: str, value: int | str, minimum: int) -> int:
    """A whole-number model arg, refused with a clear message when it is not one."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number < minimum or str(number) != str(value).strip():
        raise ValueError(f"model arg {name} must be a whole number >= {minimum}, got {value!r}")
    return number


def _pack_groups(
    groups: list[tuple[tuple[int, ...], list[int]]], rows: int
) -> Iterator[list[tuple[tuple[int, ...], list[int]]]]:
    """Batches of context groups with at most ``rows`` continuations (big groups are split)."""
    batch: list[tuple[tuple[int, ...], list[int]]] = []
    filled = 0
    for context, indices in groups:
        for start in range(0, len(indices), rows):
            part = indices[start : start + rows]
            if filled + len(part) > rows and batch:
                yield batch
                batch, filled = [], 0
            batch.append((context, part))
            filled += len(part)
    if batch:
        yield batch


def _pad(
    sequences: list[list[int]], pad: int, side: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of the sequences padded to the longest one on ``side``."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        if not sequence:
            continue
        span = slice(width - len(sequence), width) if side == "left" else slice(0, len(sequence))
        ids[row, span] = torch.tensor(sequence, dtype=torch.long)
        mask[row, span] = 1
    return ids.to(device), mask.to(device)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of left-padded rows, as transformers' generate computes them."""
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)


def _has_virtual_tokens(model) -> bool:
    """Prompt/prefix-tuning adapters prepend tokens the cache bookkeeping here does not know."""
    configs = getattr(model, "peft_config", None) or {}
    return any(getattr(c, "is_prompt_learning", False) for c in configs.values())


def _greedy_config_is_neutral(model) -> bool:
    config = getattr(model, "generation_config", None)
    if config is None:
        return True
    return not (set(config.to_diff_dict()) - GREEDY_NEUTRAL_CONFIG)


def _attention_scheme(config) -> _AttentionScheme:
    """The attention scheme a model config describes (its text config for multimodal ones)."""
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    layer_types = set(getattr(config, "layer_types", None) or ())
    window = getattr(config, "sliding_window", None)
    if getattr(config, "use_sliding_window", True) is False:  # Qwen2-style switch
        window = None
    known = (
        layer_types <= KNOWN_LAYER_TYPES and getattr(config, "attention_chunk_size", None) is None
    )
    if "sliding_attention" in layer_types and not isinstance(window, int):
        known = False  # a sliding layer without a window size to check against
    return _AttentionScheme(
        window=int(window) if isinstance(window, int) and window > 0 else None,
        alibi=_uses_alibi(config),
        known=known,
    )


def _uses_alibi(config) -> bool:
    """ALiBi: Bloom always; Falcon (``alibi``), MPT (``attn_config.alibi``), Jais-style configs
    (``position_embedding_type``)."""
    if getattr(config, "model_type", None) == "bloom" or getattr(config, "alibi", False) is True:
        return True
    attn_config = getattr(config, "attn_config", None)
    if isinstance(attn_config, dict):
        if attn_config.get("alibi") is True:
            return True
    elif getattr(attn_config, "alibi", False) is True:
        return True
    return getattr(config, "position_embedding_type", None) == "alibi"


def _kv_bytes_per_token(model) -> int:
    config = (
        model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    )
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    element = next(model.parameters()).element_size()
    return 2 * config.num_hidden_layers * heads * head_dim * element
