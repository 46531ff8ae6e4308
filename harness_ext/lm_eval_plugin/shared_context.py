"""Log-likelihoods of continuations that share a context, for the ``hf-unlearn`` backend: the
context runs once and its key/value cache serves every continuation; continuations run as one
prefix tree under a custom attention mask where the model's attention allows it, else one row
each on the shared cache; the vocabulary projection runs only where a continuation token is
predicted. Each result carries the per-token numbers the membership-inference and memorisation
metrics need (:class:`ScoredContinuation`). See :mod:`harness_ext.lm_eval_plugin.backend`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from harness_ext.lm_eval_plugin.forward_inputs import (
    has_virtual_tokens,
    pad_rows,
    position_ids_of,
    returned_cache,
)

logger = logging.getLogger("lm-unlearn")


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


def token_statistics(
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
class AttentionScheme:
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


class PrefixTree:
    """The distinct prefixes of some token sequences: each shared beginning is one node path.

    >>> tree = PrefixTree([[5, 6, 7], [5, 6, 8], [9]])
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


def pack_groups(
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


def attention_scheme(config) -> AttentionScheme:
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
    return AttentionScheme(
        window=int(window) if isinstance(window, int) and window > 0 else None,
        alibi=uses_alibi(config),
        known=known,
    )


def uses_alibi(config) -> bool:
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


class SharedContextScoring:
    """Log-likelihood requests that share a context, scored together (a mixin of the backend's model class)."""

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
        for batch in pack_groups(ordered, rows):
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
        if has_virtual_tokens(self.model) or not self._attention().known:
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
        context_ids, context_mask = pad_rows(
            contexts, self._pad_id(), side="left", device=self.device
        )
        with torch.no_grad(), self._autocast():
            prefill = self.model(
                input_ids=context_ids,
                attention_mask=context_mask,
                position_ids=position_ids_of(context_mask),
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
                cache = returned_cache(prefill)
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
        expected, variance, greedy = token_statistics(log_probs, wanted)
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
        inputs, inputs_mask = pad_rows(
            [t[:-1] for t in targets], self._pad_id(), "right", self.device
        )
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
        trees = [PrefixTree([c[:-1] for c in group]) for group in continuations]
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

    def _attention(self) -> AttentionScheme:
        if self._scheme is None:
            self._scheme = attention_scheme(self.model.config)
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
