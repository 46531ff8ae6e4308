"""Batched greedy generation for the ``hf-unlearn`` backend: rows decode together and leave the
batch as soon as they end (EOS, a stop string, their token budget), and each pass also verifies
draft tokens copied from earlier in the row (prompt-lookup decoding). See
:mod:`harness_ext.lm_eval_plugin.backend`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from lm_eval.api.instance import Instance
from lm_eval.models.utils import (
    handle_stop_sequences,
    normalize_gen_kwargs,
    postprocess_generated_text,
)
from tqdm import tqdm

from harness_ext.lm_eval_plugin.forward_inputs import (
    has_virtual_tokens,
    pad_rows,
    position_ids_of,
    returned_cache,
)

logger = logging.getLogger("lm-unlearn")


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


@dataclass
class GenerationRow:
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


def matching_prefix(draft: list[int], greedy: list[int]) -> int:
    """How many draft tokens equal the greedy choices made before them."""
    n = 0
    while n < len(draft) and draft[n] == greedy[n]:
        n += 1
    return n


def greedy_config_is_neutral(model) -> bool:
    config = getattr(model, "generation_config", None)
    if config is None:
        return True
    return not (set(config.to_diff_dict()) - GREEDY_NEUTRAL_CONFIG)


def kv_bytes_per_token(model) -> int:
    config = (
        model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    )
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    element = next(model.parameters()).element_size()
    return 2 * config.num_hidden_layers * heads * head_dim * element


class BatchedGreedyDecoding:
    """Greedy generation in batches with prompt-lookup drafts (a mixin of the backend's model class)."""

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
        return not has_virtual_tokens(self.model) and greedy_config_is_neutral(self.model)

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
            GenerationRow(index, ids, budget, stops, ngrams, first_draft, self._stop_window(stops))
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

    def _generation_batch_rows(self, rows: list[GenerationRow]) -> int:
        if self.gen_batch_size != "auto":
            return self.gen_batch_size
        if self.device.type != "cuda":
            return CPU_AUTO_GEN_BATCH
        longest = max(len(r.context) + r.budget for r in rows)
        free, _total = torch.cuda.mem_get_info(self.device)
        per_row = longest * kv_bytes_per_token(self.model) + 4 * self.model.config.vocab_size
        return max(1, min(MAX_AUTO_GEN_BATCH, int(0.5 * free / max(per_row, 1))))

    def _decode_batch(self, batch: list[GenerationRow], bar: tqdm) -> None:
        """Greedy decoding of a batch; finished rows leave the batch and its cache.

        With ``prompt_lookup_tokens`` > 0 each pass also checks up to that many draft tokens per
        row, copied from what followed the row's last tokens where they occurred before in its
        prompt or output (prompt-lookup decoding). One forward pass scores the drafts; the row
        keeps the drafts equal to its greedy choices plus one greedy token, and rejected drafts
        stay in the cache as masked holes. Repetitive outputs need far fewer passes.
        """
        stop_ids = self._stop_token_ids()
        pad = self._pad_id()
        ids, mask = pad_rows([r.context for r in batch], pad, "left", self.device)
        positions = position_ids_of(mask)
        active = list(batch)
        with torch.no_grad(), self._autocast():
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                logits_to_keep=1,
            )
            cache = returned_cache(out)
            next_position = positions[:, -1] + 1  # where each row's newest token goes
            greedy = out.logits[:, -1:].argmax(-1).tolist()
            drafts: list[list[int]] = [[] for _ in active]
            fed_width = 0  # mask columns of the last pass's fed tokens (none after the prefill)
            while True:
                keep, advance = [], []
                for j, row in enumerate(active):
                    n_ok = matching_prefix(drafts[j], greedy[j])
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
                inputs, fed_mask = pad_rows(fed, pad, "right", self.device)
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

    def _draft(self, row: GenerationRow) -> list[int]:
        room = row.budget - len(row.tokens) - 1  # a pass adds the drafts and one more token
        if self.prompt_lookup_tokens <= 0 or row.lookup_ngrams <= 0 or room <= 0:
            return []
        return row.lookup(min(row.draft_length, room))

    def _append(self, row: GenerationRow, token: int, stop_ids: set[int]) -> bool:
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
