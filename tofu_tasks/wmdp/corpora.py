"""WMDP's text corpora, the training data of unlearning hazardous knowledge (RMU's and every
text-capable method's), and WikiText, RMU's retain text.

``cais/wmdp-corpora`` holds ``cyber-forget-corpus``, ``cyber-retain-corpus`` and
``bio-retain-corpus`` (configs, split ``train``, a ``text`` field); the biosecurity forget
corpus is gated on its own (``cais/wmdp-bio-forget-corpus``): its page on the hub grants
access, then ``huggingface-cli login`` (or ``HF_TOKEN``) lets ``datasets`` read it. A local
folder (``WMDP_CORPORA_DIR``, or the training option ``--wmdp-corpora-dir``) holds
``<corpus>.jsonl`` files with a ``text`` field, the layout RMU's own code reads. WikiText is
``wikitext-2-raw-v1``'s test split, as RMU's code takes it.

RMU's code keeps a text only when it is longer than ``MIN_CHARACTERS`` characters and feeds each
one whole, cut to a token budget: :func:`rmu_examples` does the same.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CORPORA_HUB = "cais/wmdp-corpora"
GATED = {"bio-forget-corpus": "cais/wmdp-bio-forget-corpus"}
CORPORA = ("bio-forget-corpus", "bio-retain-corpus", "cyber-forget-corpus", "cyber-retain-corpus")
CORPORA_DIR_ENV = "WMDP_CORPORA_DIR"
WIKITEXT = ("Salesforce/wikitext", "wikitext-2-raw-v1", "test")
MIN_CHARACTERS = 50  # RMU keeps texts longer than this


class CorpusError(ValueError):
    """A corpus that cannot be read: the message says why and how to get it."""


def read_corpus(name: str, folder: str | os.PathLike | None = None) -> list[dict[str, str]]:
    """The texts of one WMDP corpus: from ``folder`` (else ``$WMDP_CORPORA_DIR``) as
    ``<name>.jsonl``, else from the hub."""
    if name not in CORPORA:
        raise CorpusError(f"unknown WMDP corpus {name!r}; the corpora are {', '.join(CORPORA)}")
    chosen = folder or os.environ.get(CORPORA_DIR_ENV)
    if chosen:
        return read_jsonl(Path(chosen).expanduser() / f"{name}.jsonl")
    hub_id, config = (GATED[name], None) if name in GATED else (CORPORA_HUB, name)
    try:
        import datasets

        rows = datasets.load_dataset(hub_id, name=config, split="train")
    except Exception as err:  # datasets raises many kinds; each is said plainly
        raise CorpusError(_why_unreadable(name, hub_id, err)) from err
    return [{"text": str(row["text"])} for row in rows]


def _why_unreadable(name: str, hub_id: str, err: Exception) -> str:
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    local = (
        f"or put {name}.jsonl (a JSON object with a 'text' field per line) in a folder given "
        f"as --wmdp-corpora-dir or {CORPORA_DIR_ENV}"
    )
    if name in GATED:
        return (
            f"cannot read {hub_id} ({first}): it is gated; ask for access on "
            f"https://huggingface.co/datasets/{hub_id}, then log in (huggingface-cli login, or "
            f"set HF_TOKEN); {local}"
        )
    return f"cannot read {hub_id} ({name}): {first}; offline, {local}"


def read_wikitext() -> list[dict[str, str]]:
    """WikiText-2 (raw) test texts, RMU's retain corpus."""
    hub_id, config, split = WIKITEXT
    try:
        import datasets

        rows = datasets.load_dataset(hub_id, name=config, split=split)
    except Exception as err:
        raise CorpusError(
            f"cannot read {hub_id} ({config}, {split}): {str(err).splitlines()[0]}; offline, "
            f"give a local retain text as text:PATH"
        ) from err
    return [{"text": str(row["text"])} for row in rows]


def read_jsonl(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise CorpusError(f"{path} does not exist (a corpus folder holds <corpus>.jsonl files)")
    texts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            text = json.loads(line)["text"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CorpusError(
                f"{path} line {number}: expected a JSON object with a 'text' field"
            ) from err
        texts.append({"text": str(text)})
    return texts


def rmu_examples(documents: list[dict[str, Any]], tokenizer, max_length: int) -> list[dict]:
    """RMU's cut: each text longer than ``MIN_CHARACTERS`` characters is one example, its tokens
    (with the tokenizer's special tokens) cut to ``max_length``."""
    examples = []
    for document in documents:
        if len(document["text"]) <= MIN_CHARACTERS:
            continue
        ids = tokenizer(document["text"], add_special_tokens=True)["input_ids"][:max_length]
        examples.append({"input_ids": list(ids)})
    return examples
