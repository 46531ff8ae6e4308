"""Training examples of unlearning: forget, retain and refusal pairs, tokenised with masked questions.

Forget split ``forgetXX`` is paired with TOFU's ``retain{100-XX}`` (never the evaluation rows alone)
and refusals from ``idontknow.jsonl``. Each training item is one forget example plus, as the method
needs them, a retain example and refusals:

* ``forget``      — forget question + its answer
* ``forget_idk``  — forget question + a refusal (IDK, DPO)
* ``retain``      — a retain question + its answer (GD, KL, AP, RMU)
* ``retain_idk``  — that retain question + a refusal (AP)

Pairing: ``random`` draws the retain example and refusals afresh every epoch (seeded by seed, epoch
and index, so runs and resumed runs repeat it); ``fixed`` is the paper's: item i seeds torch's
generator with i and draws a retain offset and one refusal once, for all epochs; that one refusal
serves both the forget and the retain IDK example. The draws are those of the paper's public
code, so the same forget rows meet the same retain rows and refusals.

Forget and retain data may also be text corpora (MUSE's ``raw`` splits, ``muse-news:forget``;
a local file, ``text:PATH``): each document is tokenised once, closed with EOS and cut into
``max_length``-token chunks, one training example each, with every token supervised. WMDP's
corpora (``wmdp:cyber-forget-corpus``) and WikiText (``wikitext``, RMU's retain text) are cut
as RMU's code cuts them: each text longer than 50 characters one example, its tokens cut to
``max_length``. Methods whose loss needs questions (the refusal-based IDK, DPO and AP) refuse
text.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from harness_ext.prompts import PromptFormat
from harness_ext.provenance import content_hash
from harness_ext.row_slices import RowSliceError, parse_slice, split_named_slice
from tofu_tasks import data as tofu_data
from tofu_tasks.muse.data import CORPORA
from unlearn_methods.losses.functional import IGNORE_INDEX

PAIRINGS = ("random", "fixed")


class UnlearnDataError(ValueError):
    """Training data or tokenizer cannot be used."""


@dataclass(frozen=True)
class UnlearnData:
    forget_split: str
    retain_split: str
    forget: tuple[dict[str, str], ...]
    retain: tuple[dict[str, str], ...]
    refusals: tuple[str, ...]

    def content_hash(self) -> str:
        rows = [{"forget": r} for r in self.forget] + [{"retain": r} for r in self.retain]
        return content_hash(rows + [{"refusal": r} for r in self.refusals])


def parse_rows_spec(spec: str) -> list[tuple[str, int | None, int | None]]:
    """``"retain90,forget10[0:360]"`` → [("retain90", None, None), ("forget10", 0, 360)].

    A comma-separated list of TOFU splits, each optionally cut by a Python-style slice of its rows.
    """
    parts = []
    for item in (p.strip() for p in spec.split(",")):
        if not item:
            continue
        try:
            name, rows = split_named_slice(item)
            start, stop = parse_slice(rows) if rows is not None else (None, None)
        except RowSliceError as err:
            raise UnlearnDataError(
                f"{item!r}: write rows as split[start:stop], e.g. forget10[0:40]"
            ) from err
        parts.append((name, start, stop))
    if not parts:
        raise UnlearnDataError(f"{spec!r} names no TOFU split")
    return parts


REALWORLD_PREFIX = "realworld:"
LUME_PREFIX = "lume:"  # LUME's rows: lume:forget, lume:retain/Task2 (a folder: $LUME_DATA_DIR)
# text corpora: MUSE's raw splits (hub or $MUSE_DATA_DIR), WMDP's corpora (hub or
# $WMDP_CORPORA_DIR), WikiText and local files
MUSE_PREFIXES = {f"muse-{corpus}:": corpus for corpus in CORPORA}
WMDP_PREFIX = "wmdp:"
WIKITEXT = "wikitext"
TEXT_FILE_PREFIX = "text:"
TEXT_PREFIXES = (TEXT_FILE_PREFIX, *MUSE_PREFIXES, WMDP_PREFIX)


def _is_text_name(name: str) -> bool:
    return name.startswith(TEXT_PREFIXES) or name == WIKITEXT


def is_text_spec(spec: str) -> bool:
    """Whether a rows spec names a text corpus rather than question–answer rows."""
    return _is_text_name(parse_rows_spec(spec)[0][0])


def text_cut(spec: str) -> str:
    """How a text spec's documents become examples: ``rmu`` (as RMU's code cuts WMDP's corpora
    and WikiText) or ``chunks`` (``max_length``-token chunks, closed with EOS)."""
    name = parse_rows_spec(spec)[0][0]
    return "rmu" if name.startswith(WMDP_PREFIX) or name == WIKITEXT else "chunks"


def cut_text(documents: list[dict[str, Any]], cut: str, tokenizer, max_length: int) -> list[dict]:
    """Documents as ``{"input_ids": [...]}`` examples, cut by :func:`text_cut`'s rule."""
    if cut == "rmu":
        from tofu_tasks.wmdp.corpora import rmu_examples

        return rmu_examples(documents, tokenizer, max_length)
    return text_chunks(documents, tokenizer, max_length)


def read_text_file(path: str) -> list[dict[str, str]]:
    """Documents of a local file: JSON Lines with a ``text`` field, or a plain-text file (one
    document)."""
    import json
    from pathlib import Path

    file = Path(path).expanduser()
    if not file.is_file():
        raise UnlearnDataError(f"text corpus {file} does not exist")
    if file.suffix not in (".jsonl", ".json"):
        return [{"text": file.read_text(encoding="utf-8")}]
    documents = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            text = json.loads(line)["text"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise UnlearnDataError(
                f"{file} line {number}: expected a JSON object with a 'text' field"
            ) from err
        documents.append({"text": text})
    return documents


def read_text_rows(
    name: str, muse_data_dir: str | None = None, wmdp_corpora_dir: str | None = None
) -> list[dict[str, str]]:
    if name.startswith(TEXT_FILE_PREFIX):
        return read_text_file(name.removeprefix(TEXT_FILE_PREFIX))
    if name.startswith(WMDP_PREFIX) or name == WIKITEXT:
        from tofu_tasks.wmdp.corpora import CorpusError, read_corpus, read_wikitext

        try:
            if name == WIKITEXT:
                return read_wikitext()
            return read_corpus(name.removeprefix(WMDP_PREFIX), wmdp_corpora_dir)
        except CorpusError as err:
            raise UnlearnDataError(str(err)) from err
    from tofu_tasks.muse.data import MuseDataError, read_split

    prefix = next(p for p in MUSE_PREFIXES if name.startswith(p))
    # "forget" is a raw split; "scal/forget_2" or "sust/forget_3" names another text config
    config, _, split = name.removeprefix(prefix).rpartition("/")
    try:
        return read_split(MUSE_PREFIXES[prefix], config or "raw", split, muse_data_dir)
    except MuseDataError as err:
        raise UnlearnDataError(str(err)) from err


def read_rows(
    spec: str,
    data_dir: str | None = None,
    muse_data_dir: str | None = None,
    wmdp_corpora_dir: str | None = None,
    lume_data_dir: str | None = None,
) -> list[dict[str, Any]]:
    """Rows of a rows spec (see :func:`parse_rows_spec`), in order: TOFU's from ``data_dir``,
    MUSE's from ``muse_data_dir``, WMDP's corpora from ``wmdp_corpora_dir``, LUME's from
    ``lume_data_dir`` (each else its environment variable, else the hub or LUME's repository).

    ``realworld:forget`` / ``realworld:retain`` / ``realworld:neighbor`` (or
    ``realworld:PATH.json``) read the real-world sets, their golden answers as answers.
    """
    rows: list[dict[str, Any]] = []
    for name, start, stop in parse_rows_spec(spec):
        if _is_text_name(name):
            rows += read_text_rows(name, muse_data_dir, wmdp_corpora_dir)[start:stop]
        elif name.startswith(LUME_PREFIX):
            from tofu_tasks.lume.data import LumeDataError
            from tofu_tasks.lume.data import read_rows as read_lume_rows

            try:
                source = read_lume_rows(name.removeprefix(LUME_PREFIX), lume_data_dir)
            except LumeDataError as err:
                raise UnlearnDataError(str(err)) from err
            rows += [{"question": r["input"], "answer": r["output"]} for r in source][start:stop]
        elif name.startswith(REALWORLD_PREFIX):
            from tofu_tasks.realworld import read_realworld

            source = read_realworld(name.removeprefix(REALWORLD_PREFIX))
            rows += [{**r, "answer": r["golden_answer"]} for r in source][start:stop]
        else:
            rows += tofu_data.read_split(name, data_dir)[start:stop]
    return rows


def with_targets(rows: Sequence[dict[str, Any]], targets: dict[str, str]) -> list[dict[str, Any]]:
    """Rows whose answers become the given targets (question -> text), e.g. the model's own
    answers before unlearning; every row must have one."""
    missing = [r["question"] for r in rows if r["question"] not in targets]
    if missing:
        raise UnlearnDataError(
            f"the targets file has no answer for {len(missing)} of {len(rows)} questions (first: "
            f"{missing[0]!r}); make it with lm-unlearn reference on the same rows"
        )
    return [{**r, "answer": targets[r["question"]]} for r in rows]


def retain_split_for(forget_split: str) -> str:
    """TOFU's complement: forget k% trains against retain (100 − k)%; real world: the training
    retain group (people disjoint from the scored neighbour set)."""
    forget_split = parse_rows_spec(forget_split)[0][0]
    if forget_split.startswith(REALWORLD_PREFIX):
        return REALWORLD_PREFIX + "retain"
    muse = next((p for p in MUSE_PREFIXES if forget_split.startswith(p)), None)
    if muse:
        return muse + "retain1"  # MUSE's retain corpus of unlearning
    if forget_split.startswith(WMDP_PREFIX):
        return WIKITEXT  # RMU's retain text
    if forget_split.startswith(LUME_PREFIX):  # the same subtask's retain rows, if one is named
        _, _, subtask = forget_split.partition("/")
        return LUME_PREFIX + "retain" + (f"/{subtask}" if subtask else "")
    digits = forget_split.removeprefix("forget")
    if not forget_split.startswith("forget") or not digits.isdigit():
        raise UnlearnDataError(
            f"cannot infer the retain split of {forget_split!r}; pass retain_split explicitly"
        )
    return f"retain{100 - int(digits):02d}"


def load_unlearn_data(
    forget_split: str,
    retain_split: str | None = None,
    data_dir: str | None = None,
    targets: str | None = None,
    tokenizer: Any = None,
    max_length: int = 500,
    muse_data_dir: str | None = None,
    wmdp_corpora_dir: str | None = None,
    lume_data_dir: str | None = None,
) -> UnlearnData:
    """Forget rows, retain rows and refusals, each checked by the TOFU data layer; a text corpus
    becomes ``max_length``-token chunks of ``tokenizer`` (``{"input_ids": [...]}`` rows).

    ``targets``: a reference (``lm-unlearn reference`` file or run) whose generations replace the
    dataset answers of both forget and retain rows — the real-world setup, where a model unlearns
    what it itself says.
    """
    retain_split = retain_split or retain_split_for(forget_split)
    folders = (data_dir, muse_data_dir, wmdp_corpora_dir, lume_data_dir)
    forget = read_rows(forget_split, *folders)
    retain = read_rows(retain_split, *folders)
    texts = is_text_spec(forget_split), is_text_spec(retain_split)
    if any(texts) and targets:
        raise UnlearnDataError("--targets replaces answers; a text corpus has none")
    if any(texts) and tokenizer is None:
        raise UnlearnDataError("a text corpus is chunked by the model's tokenizer; pass it")
    if targets:
        from tofu_tasks.reference_files import load_reference

        answers = {r.question: r.generation for r in load_reference(targets).rows if r.generation}
        forget, retain = with_targets(forget, answers), with_targets(retain, answers)
    if not forget:
        raise UnlearnDataError(f"the forget split {forget_split!r} is empty: nothing to unlearn")

    def examples(rows: list[dict[str, Any]], spec: str) -> tuple[dict[str, Any], ...]:
        if is_text_spec(spec):
            return tuple(cut_text(rows, text_cut(spec), tokenizer, max_length))
        return tuple({k: r[k] for k in ("question", "answer")} for r in rows)

    forget_examples = examples(forget, forget_split)
    if not forget_examples:
        raise UnlearnDataError(
            f"the forget corpus {forget_split!r} gives no training text (RMU's cut keeps texts "
            f"longer than 50 characters)"
        )
    return UnlearnData(
        forget_split,
        retain_split,
        forget_examples,
        examples(retain, retain_split),
        () if texts[0] else tuple(tofu_data.read_refusals(data_dir)),
    )


def text_chunks(documents: list[dict[str, Any]], tokenizer, max_length: int) -> list[dict]:
    """Each document tokenised (with the tokenizer's BOS), closed with EOS and cut into chunks of
    ``max_length`` tokens, as MUSE's and open-unlearning's raw-text training cut them."""
    if max_length < 2:
        raise UnlearnDataError(f"max_length must leave room for text, got {max_length}")
    chunks = []
    for document in documents:
        ids = list(tokenizer(document["text"], add_special_tokens=True)["input_ids"])
        ids.append(tokenizer.eos_token_id)
        chunks += [{"input_ids": ids[i : i + max_length]} for i in range(0, len(ids), max_length)]
    return chunks


QUESTION_SETS = ("forget_idk", "retain_idk")  # example sets built from a question


def check_method_data(needs: Sequence[str], data: UnlearnData, method: str) -> None:
    """A method that answers questions with refusals cannot train on a text corpus."""
    texts = {
        "forget_idk": bool(data.forget) and "input_ids" in data.forget[0],
        "retain_idk": bool(data.retain) and "input_ids" in data.retain[0],
    }
    asked = [name for name in needs if name in QUESTION_SETS and texts[name]]
    if asked:
        raise UnlearnDataError(
            f"{method} trains refusals to questions ({', '.join(asked)}), and a text corpus has "
            f"none; on text, use GA, GA+GD, GA+KL, NPO, NPO+GD, SimNPO+GD, ME+GD or RMU"
        )


def check_tokenizer(tokenizer, name: str = "the tokenizer") -> None:
    if tokenizer.pad_token_id is None:
        raise UnlearnDataError(
            f"{name} has no pad token, so batches cannot be padded. Pass --pad-token eos to pad "
            f"with the end-of-sequence token (the usual choice for Llama-style tokenizers), or set "
            f"one in the tokenizer."
        )
    if tokenizer.eos_token_id is None:
        raise UnlearnDataError(f"{name} has no end-of-sequence token; answers must end with one")


@dataclass
class PromptEncoder:
    """question + answer → input ids and labels with the question (and padding) masked.

    The whole text is tokenised once (as TOFU does) and tokens that start inside the prompt are
    masked, so the boundary never depends on how the answer tokenises alone. One EOS token
    closes every answer and is supervised.
    """

    tokenizer: Any
    prompt_format: PromptFormat
    max_length: int = 500

    def prompt(self, question: str) -> str:
        if self.prompt_format.name == "chat":
            if not getattr(self.tokenizer, "chat_template", None):
                raise UnlearnDataError(
                    "prompt format 'chat' needs a tokenizer with a chat template; this one has "
                    "none. Choose --prompt-format plain, llama2 or phi."
                )
            messages = [{"role": "user", "content": question}]
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        return self.prompt_format.prompt.format(question=question)

    def encode(self, question: str, answer: str) -> dict[str, list[int]]:
        prompt = self.prompt(question)
        text = prompt + self.prompt_format.answer.format(answer=answer)
        special = self.prompt_format.name != "chat"  # a chat template writes its own specials
        encoded = self.tokenizer(
            text, add_special_tokens=special, return_offsets_mapping=True, truncation=False
        )
        ids = list(encoded["input_ids"])
        labels = [
            IGNORE_INDEX if start < len(prompt) or end == 0 else token
            for token, (start, end) in zip(ids, encoded["offset_mapping"], strict=True)
        ]
        ids.append(self.tokenizer.eos_token_id)
        labels.append(self.tokenizer.eos_token_id)
        ids, labels = ids[: self.max_length], labels[: self.max_length]
        if all(label == IGNORE_INDEX for label in labels):
            raise UnlearnDataError(
                f"max_length={self.max_length} leaves no answer token of {question[:60]!r}"
            )
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def fixed_partners(index: int, retain_rows: int, refusals: int) -> tuple[int, int, int]:
    """The paper's pairing of forget item ``index``: a generator seeded with the index draws a
    retain offset from the item and one refusal, used for both IDK examples."""
    generator = torch.Generator().manual_seed(index)
    offset = int(torch.randint(0, retain_rows, (1,), generator=generator))
    refusal = int(torch.randint(0, refusals, (1,), generator=generator))
    return (index + offset) % retain_rows, refusal, refusal


@dataclass
class UnlearnDataset(torch.utils.data.Dataset):
    """One item per forget example, carrying every example set the method reads."""

    data: UnlearnData
    encoder: PromptEncoder
    sets: Sequence[str]
    pairing: str = "random"
    seed: int = 1001
    epoch: int = 0
    _cache: dict[tuple, dict[str, list[int]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.pairing not in PAIRINGS:
            raise UnlearnDataError(f"pairing must be one of {PAIRINGS}, got {self.pairing!r}")

    def __len__(self) -> int:
        return len(self.data.forget)  # one item per forget example (a chunk, for text)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def partners(self, index: int) -> tuple[int, int, int]:
        """(retain index, refusal for the forget question, refusal for the retain question)."""
        # text data has no refusals and never asks for one (check_method_data)
        retain, refusals = len(self.data.retain), max(1, len(self.data.refusals))
        if self.pairing == "fixed":
            return fixed_partners(index, retain, refusals)
        rng = random.Random(f"{self.seed}:{self.epoch}:{index}")
        return rng.randrange(retain), rng.randrange(refusals), rng.randrange(refusals)

    def _encode(self, key: tuple, question: str, answer: str) -> dict[str, list[int]]:
        if key not in self._cache:
            self._cache[key] = self.encoder.encode(question, answer)
        return self._cache[key]

    @staticmethod
    def _text(row: dict[str, Any]) -> dict[str, list[int]]:
        """A text chunk: every token supervised."""
        ids = list(row["input_ids"])
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": ids}

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        forget = self.data.forget[index]
        retain_index, idk_forget, idk_retain = self.partners(index)
        retain = self.data.retain[retain_index]
        refusals = self.data.refusals or ("",)  # text data: no refusal is ever asked for
        sources = {
            "forget": (("f", index), forget.get("question"), forget.get("answer")),
            "forget_idk": (("fi", index, idk_forget), forget.get("question"), refusals[idk_forget]),
            "retain": (("r", retain_index), retain.get("question"), retain.get("answer")),
            "retain_idk": (
                ("ri", retain_index, idk_retain),
                retain.get("question"),
                refusals[idk_retain],
            ),
        }
        item = {}
        for name in self.sets:
            key, question, answer = sources[name]
            row = forget if name.startswith("forget") else retain
            example = self._text(row) if "input_ids" in row else self._encode(key, question, answer)
            for field_name, values in example.items():
                item[f"{name}_{field_name}"] = values
        return item


@dataclass
class UnlearnCollator:
    """Right-pads every example set of a batch (to a fixed length when ``pad_to`` is set)."""

    pad_token_id: int
    sets: Sequence[str]
    pad_to: int | None = None

    def __call__(self, items: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        batch = {}
        for name in self.sets:
            length = self.pad_to or max(len(item[f"{name}_input_ids"]) for item in items)
            for field_name, pad in (
                ("input_ids", self.pad_token_id),
                ("attention_mask", 0),
                ("labels", IGNORE_INDEX),
            ):
                rows = [item[f"{name}_{field_name}"] for item in items]
                batch[f"{name}_{field_name}"] = torch.tensor(
                    [row + [pad] * (length - len(row)) for row in rows], dtype=torch.long
                )
        return batch
