"""How a task's documents become log-likelihood requests and how their results are read back:
the evaluated model's tokenizer, token counts as lm-eval's hf backend makes them, and the plan of
one document's requests. Shared by every benchmark's task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness_ext.lm_eval_plugin.scored_tokens import ScoredSpan


class TaskSetupError(ValueError):
    """The task cannot run with the options it was given."""


def load_model_tokenizer(metadata: dict[str, Any]):
    """The evaluated model's tokenizer, loaded as lm-eval's hf backend loads it."""
    from transformers import AutoTokenizer

    name = metadata.get("tokenizer") or metadata.get("pretrained")
    if not isinstance(name, str) or not name:
        raise TaskSetupError(
            "the tasks count answer tokens with the model's tokenizer but cannot find it: "
            "pass pretrained=<id or path> in --model_args, or tokenizer=<id or path> in "
            "--metadata when the model object is built by hand"
        )
    kwargs: dict[str, Any] = {"trust_remote_code": bool(metadata.get("trust_remote_code", False))}
    if metadata.get("revision"):
        kwargs["revision"] = metadata["revision"]
    if metadata.get("gguf_file") and not metadata.get("tokenizer"):
        kwargs["gguf_file"] = metadata["gguf_file"]
    try:
        return AutoTokenizer.from_pretrained(name, **kwargs)
    except Exception as err:
        raise TaskSetupError(f"cannot load the tokenizer of {name!r}: {err}") from err


def continuation_token_counts(tokenizer, pairs: list[tuple[str, str]]) -> list[int]:
    """Tokens of each continuation given its context, counted as lm-eval's hf backend does.

    Trailing whitespace of the context moves to the continuation, then
    count = len(tok(context + continuation)) − len(tok(context)).
    """
    moved = []
    for context, continuation in pairs:
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        moved.append((context, context + continuation))

    def encode(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    context_lengths = encode([c for c, _ in moved])
    whole_lengths = encode([w for _, w in moved])
    return [w - c for w, c in zip(whole_lengths, context_lengths, strict=True)]


DocKey = tuple[str, int]


def doc_key(doc: dict) -> DocKey:
    return doc["set"], doc["row"]


@dataclass
class DocPlan:
    """How one document's log-likelihood results are read back.

    counts: scored tokens per answer (ground truth first); boundary_of: per answer, the index
    of the pair whose log-likelihood is subtracted (None: nothing); zlib_text: the text of the
    ground truth's scored tokens without EOS (the ZLib attack's); probes: the per-token
    requests, in token order.
    """

    counts: list[int]
    boundary_of: list[int | None]
    zlib_text: str
    probes: list[ProbeResult] | None = None
    span: ScoredSpan | None = None

    def probe_indexes(self) -> set[int]:
        """The pairs (probes and their boundaries) that only serve per-token numbers."""
        pairs = ((p.index, p.boundary) for p in self.probes or ())
        return {i for pair in pairs for i in pair if i is not None}


@dataclass(frozen=True)
class ProbeResult:
    """Where a per-token probe's result lies among a document's pairs: its index, the index of
    the boundary subtracted from it (None: nothing), whether it is exact, tokens covered."""

    index: int
    boundary: int | None
    exact: bool
    size: int
