"""Loading and checking TOFU.

TOFU comes from the Hugging Face hub (``locuslab/TOFU``) by default, or from a local directory of
its JSON Lines files when ``TOFU_DATA_DIR`` (or an explicit ``data_dir``) is set. Every split is
checked when it is read: row count, required fields and perturbed-answer counts. Any problem
raises :class:`TofuDataError` naming the file and the line, so a run never continues on a
silently empty or truncated dataset.

>>> rows = read_split("forget01_perturbed")          # doctest: +SKIP
>>> len(rows), sorted(rows[0])[:2]                   # doctest: +SKIP
(40, ['answer', 'paraphrased_answer'])
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness_ext.metrics import privacy
from harness_ext.row_slices import RowSliceError, row_numbers, slice_range, split_named_slice
from tofu_tasks.eval_sets import EVAL_SETS, FORGET_SPLITS, RowSelection

TOFU_HUB_REPO = "locuslab/TOFU"
# Hub downloads are pinned by content: each file must hash to the value below (the release the
# project was validated against), so an upstream change is reported instead of silently scored.
TOFU_HUB_REVISION = os.environ.get("TOFU_REVISION", "main")
TOFU_SHA256 = {
    "forget01.json": "d0047332bd27a489c552659831f4ffff080e2b9b6e063c7c951ac4de9d494a63",
    "forget01_perturbed.json": "d8d8a80bd25e853b52fad0e3301d86fa4db6bc2b665cd79ea937346186a0944a",
    "forget05.json": "88542818f98fd6f880ecaea71bc3f3e7a34f959944e5ff1cdef7ea8c5c137173",
    "forget05_perturbed.json": "7596c863a3f7eafb551a167363826f71a7327f28617a0a533fed06108a50ccdb",
    "forget10.json": "0044c8c2e70a38be93f62ec6cb1c1cc2a1f55a8df2fb549a4da2da8dde9d92f6",
    "forget10_perturbed.json": "6fbcb946c57ea1d7b2124cea0e61bf3b5409d1bc10d02368f090109450ed73c7",
    "forget20.json": "e1975b35fc4f8fdf78348f926c68e9fcc26168900c9e4611d5c834619981fb41",
    "forget30.json": "64a993a52da64787e6d71afbcf382ee8d4341ba1956f0a31a17a680b375f8429",
    "forget50.json": "ecd4231ddd59ec492592572b7a8e4ba6972403893b8b0625698889f23b1b0f09",
    "forget90.json": "7c32e36ebf098547a6aa1fb9f5146b96c03bcefeed9140b288c6db8c97e55fdf",
    "full.json": "667baef2f26f781f1328701d8ea54bf25123ff22fb2d98574c96cd991cb54086",
    "real_authors.json": "5ed86f884ecbefc3a5db0b9dfe84ab3db710690c74d9402c0acc14bc3dd5a4b7",
    "real_authors_perturbed.json": "a23255383ac75a5fbe5acd57622a03fb9c368954fd7b2428afa152b784d9533a",
    "retain10.json": "c8553c3e5f09b40bee371dd1195c699509699f9a6abb2a3ac92c6a603e5a2297",
    "retain50.json": "6dcc828b669c09b1a537776ef7ac80d7e51a9e2d76af5c827543c3c01086625e",
    "retain70.json": "ed8d049726e3510b0ad7980affe338700a1af6d006092741973772bcf1ef0b2c",
    "retain80.json": "74a04cd4d4ea8fd6e8688a325d1c1f8df223f5e55faaa0a55a499e8f04870c6e",
    "retain90.json": "debcf019c41db7b30b62ca6ad41fd8a4bcd29a5b321c21d2961974e308dfca55",
    "retain95.json": "6625bb8e7e01f27a237bd273b961fcf2fb51568157702acdcd934b13398aa2fc",
    "retain99.json": "e699ae5fe685996cd7d0a60cbcbeae717e989a2fd0caf00b4d545ba39ccefc61",
    "retain_perturbed.json": "fc69f33bad70d3dca65920bdb54380039e3e8872dd16bbae20c1a839b99533fb",
    "world_facts.json": "5547b07340f46755b868a525941341c3d93814b5370ae7fa10143f653a3c7033",
    "world_facts_perturbed.json": "0e171838040d0ec94b1ce248d891508e85e3b77344370077caa27b61898eb3e1",
    "idontknow.jsonl": "eb9a1e32a6f4112088306e1a65d297240f75513dd5223b2acb326454675fd605",
}
DATA_DIR_ENV = "TOFU_DATA_DIR"
# rows the model never saw: the non-members of membership inference
HOLDOUT_SET = privacy.HOLDOUT

QA_FIELDS = ("question", "answer")
PERTURBED_FIELDS = ("question", "answer", "paraphrased_answer", "perturbed_answer")
CHOICE_PERTURBED_FIELDS = ("question", "answer", "perturbed_answer")


class TofuDataError(ValueError):
    """TOFU data is missing, unreadable or not shaped as expected."""


@dataclass(frozen=True)
class SplitSpec:
    rows: int | None  # None: any positive number of rows
    fields: tuple[str, ...]
    n_perturbed: int = 0


def _percent_rows(percent: int) -> int:
    return 4000 * percent // 100


def split_spec(name: str) -> SplitSpec:
    """Expected shape of a TOFU split (file name without ``.json``)."""
    if name == "full":
        return SplitSpec(4000, QA_FIELDS)
    if name.endswith("_perturbed"):
        base = name.removesuffix("_perturbed")
        if base in ("real_authors", "world_facts"):
            return SplitSpec(100 if base == "real_authors" else 117, CHOICE_PERTURBED_FIELDS, 3)
        if base == "retain":
            return SplitSpec(400, PERTURBED_FIELDS, 5)
        if base.startswith("forget") and base[6:].isdigit():
            return SplitSpec(_percent_rows(int(base[6:])), PERTURBED_FIELDS, 5)
    if name in ("real_authors", "world_facts"):
        fields = ("question", "option1", "option2", "option3", "option4", "answer")
        return SplitSpec(100 if name == "real_authors" else 117, fields)
    for prefix in ("forget", "retain"):
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            return SplitSpec(_percent_rows(int(name[len(prefix) :])), QA_FIELDS)
    return SplitSpec(None, QA_FIELDS)


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The local TOFU directory to read from, or None for the hub.

    An explicit ``data_dir`` wins over ``TOFU_DATA_DIR``. A directory that does not exist is an
    error, never a silent fall-back to the hub.
    """
    chosen = data_dir or os.environ.get(DATA_DIR_ENV) or None
    if chosen is None:
        return None
    path = Path(chosen).expanduser().resolve()
    if not path.is_dir():
        origin = "data_dir" if data_dir else DATA_DIR_ENV
        raise TofuDataError(
            f"TOFU data directory {path} (from {origin}) does not exist. Point {DATA_DIR_ENV} at a "
            f"directory holding TOFU's JSON Lines files (forget01_perturbed.json, ...), or unset "
            f"it to download {TOFU_HUB_REPO} from the Hugging Face hub."
        )
    return path


def _hub_file(filename: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download

        path = Path(
            hf_hub_download(
                TOFU_HUB_REPO, filename, repo_type="dataset", revision=TOFU_HUB_REVISION
            )
        )
    except Exception as err:  # network, offline mode, missing file: one clear message
        raise TofuDataError(
            f"could not fetch {filename} from the hub dataset {TOFU_HUB_REPO} "
            f"(revision {TOFU_HUB_REVISION}): {type(err).__name__}: {err}. Without hub access, set "
            f"{DATA_DIR_ENV} to a local directory of TOFU's JSON Lines files."
        ) from err
    expected = TOFU_SHA256.get(filename)
    if expected and file_sha256(path) != expected:
        raise TofuDataError(
            f"{filename} from {TOFU_HUB_REPO}@{TOFU_HUB_REVISION} does not match the release this "
            f"project was validated on (sha256 {expected[:12]}...). Pin TOFU_REVISION to that "
            f"release or use a local copy through {DATA_DIR_ENV}."
        )
    return path


def split_path(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Path of a split's file, downloading it from the hub when no local directory is set."""
    filename = name if name.endswith((".json", ".jsonl")) else f"{name}.json"
    local = resolve_data_dir(data_dir)
    if local is None:
        return _hub_file(filename)
    path = local / filename
    if not path.is_file():
        raise TofuDataError(
            f"TOFU file {path} not found. The directory {local} must hold TOFU's JSON Lines "
            f"files (e.g. {name}.json)."
        )
    return path


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSON Lines file, naming the line of any corrupt or non-object entry."""
    rows: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TofuDataError(f"{path}: cannot read: {err}") from err
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise TofuDataError(f"{path} line {line_no}: not valid JSON ({err.msg})") from err
        if not isinstance(row, dict):
            raise TofuDataError(f"{path} line {line_no}: expected a JSON object per line")
        rows.append(row)
    return rows


def validate_rows(rows: list[dict[str, Any]], spec: SplitSpec, path: Path) -> None:
    """Check every row against the split's spec; raise TofuDataError naming file and row."""
    if not rows:
        raise TofuDataError(f"{path}: the file holds no rows")
    if spec.rows is not None and len(rows) != spec.rows:
        raise TofuDataError(f"{path}: expected {spec.rows} rows, found {len(rows)}")
    for index, row in enumerate(rows):
        where = f"{path} row {index} (line {index + 1})"
        for field in spec.fields:
            if field not in row:
                raise TofuDataError(f"{where}: missing field {field!r}")
            value = row[field]
            if field == "perturbed_answer":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise TofuDataError(f"{where}: 'perturbed_answer' must be a list of strings")
                if len(value) != spec.n_perturbed:
                    raise TofuDataError(
                        f"{where}: expected {spec.n_perturbed} perturbed answers, "
                        f"found {len(value)}"
                    )
            elif not isinstance(value, str) or not value.strip():
                raise TofuDataError(f"{where}: field {field!r} must be a non-empty string")


@functools.lru_cache(maxsize=64)
def _read_split_cached(name: str, path: Path, mtime_ns: int) -> tuple[dict[str, Any], ...]:
    rows = parse_jsonl(path)
    validate_rows(rows, split_spec(name), path)
    return tuple(rows)


def read_split(name: str, data_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Rows of a TOFU split (``"forget01_perturbed"``, ``"retain90"``, ...), checked."""
    path = split_path(name, data_dir)
    rows = _read_split_cached(name, path, path.stat().st_mtime_ns)
    return [dict(row) for row in rows]


def read_refusals(data_dir: str | os.PathLike | None = None) -> list[str]:
    """TOFU's refusal strings (``idontknow.jsonl``: one plain-text line each)."""
    path = split_path("idontknow.jsonl", data_dir)
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    refusals = [line for line in lines if line]
    if not refusals:
        raise TofuDataError(f"{path}: no refusal strings found")
    return refusals


def _positive_int(value: Any, name: str) -> int | None:
    if value in (None, "", "none", "None"):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise TofuDataError(f"{name} must be a positive integer, got {value!r}") from None
    if number <= 0:
        raise TofuDataError(f"{name} must be a positive integer, got {value!r}")
    return number


def forget_row_numbers(text: str, available: int) -> list[int]:
    """ "360:400" → rows 360..399; "10:20,30:40" → rows 10..19 and 30..39 (slices separated by
    commas, in order, none twice), checked against the rows the split has.

    >>> forget_row_numbers("1:3,5:6", 10)
    [1, 2, 5]
    """
    try:
        return row_numbers(text, available)
    except RowSliceError as err:
        raise TofuDataError(
            f"forget_rows must be 'start:stop' (e.g. '360:400') or several separated by commas "
            f"('10:20,30:40'), within the forget split's {available} rows and none twice: {err}"
        ) from err


def row_limits(value: Any, names: Sequence[str] | None = None) -> dict[str, int | None]:
    """max_rows_per_set as a limit per set name (an int applies to every set); ``names``: the
    task's sets (default TOFU's four)."""
    names = list(names or [*(s.name for s in EVAL_SETS), HOLDOUT_SET])
    if isinstance(value, str) and value.strip().startswith("{"):
        value = json.loads(value)
    if isinstance(value, dict):
        unknown = set(value) - set(names)
        if unknown:
            raise TofuDataError(
                f"max_rows_per_set names unknown sets {sorted(unknown)}; the sets are {names}"
            )
        return {k: _positive_int(v, f"max_rows_per_set[{k!r}]") for k, v in value.items()}
    limit = _positive_int(value, "max_rows_per_set")
    return dict.fromkeys(names, limit)


def set_names(value: Sequence[str] | str) -> list[str]:
    """The names the task option ``sets`` gives, in its order, not checked: a list, a JSON list,
    or names separated by commas.

    >>> set_names('["forget", "holdout"]'), set_names("forget, holdout")
    (['forget', 'holdout'], ['forget', 'holdout'])
    """
    if isinstance(value, str):
        value = json.loads(value) if value.strip().startswith("[") else value.split(",")
    return [str(name).strip() for name in value if str(name).strip()]


def scored_sets(value: Sequence[str] | str | None) -> set[str]:
    """The task option ``sets``: the set names to score (a list, or names separated by commas);
    None for every set.

    >>> sorted(scored_sets("forget, holdout"))
    ['forget', 'holdout']
    """
    names = [*(s.name for s in EVAL_SETS), HOLDOUT_SET]
    if value is None:
        return set(names)
    chosen = set(set_names(value))
    unknown = chosen - set(names)
    if unknown or not chosen:
        raise TofuDataError(
            f"sets names {sorted(unknown) or 'no set'}; choose among {', '.join(names)}"
        )
    return chosen


FORGET_QUESTIONS = ("original", "paraphrased")  # the task options forget_question, retain_question


def check_forget_question(value: str, option: str = "forget_question") -> None:
    if value not in FORGET_QUESTIONS:
        raise TofuDataError(f"{option} must be one of {', '.join(FORGET_QUESTIONS)}, got {value!r}")


def paraphrased_question(record: dict[str, Any], source: str, row: int) -> str:
    """TOFU's rephrasing of a forget question (``paraphrased_question`` of the perturbed files)."""
    text = record.get("paraphrased_question")
    if not isinstance(text, str) or not text.strip():
        raise TofuDataError(
            f"{source} row {row} has no 'paraphrased_question'; paraphrased questions need "
            f"TOFU's perturbed files with the rephrased questions"
        )
    return text


def build_eval_docs(
    forget_split: str,
    rows: RowSelection = "legacy",
    max_rows_per_set: int | dict[str, int] | None = None,
    data_dir: str | os.PathLike | None = None,
    forget_rows: str | None = None,
    forget_question: str = "original",
    retain_question: str = "original",
) -> list[dict[str, Any]]:
    """Documents of one ``tofu_<forget>_unlearn`` run: the four eval sets, in order.

    ``max_rows_per_set`` cuts every set to N rows, or, as a mapping such as
    ``{"retain": 10, "real_authors": 10}``, only the sets it names. ``forget_rows`` ("360:400",
    or slices separated by commas) scores only those forget rows (TOFU's 300-row rule then does not apply):
    one request of a continual run. ``forget_question="paraphrased"`` asks the forget rows in
    TOFU's rephrased form (``paraphrased_question``), answers unchanged: does the forgetting
    hold when the question is worded differently? ``retain_question="paraphrased"`` does the
    same for the retain rows.

    Each document names its set and its row in the source file, and carries the question,
    the answer, the base answer of the truth ratio and the perturbed answers.
    """
    if forget_split not in FORGET_SPLITS:
        raise TofuDataError(
            f"unknown forget split {forget_split!r}; choose one of {', '.join(FORGET_SPLITS)}"
        )
    if rows not in ("legacy", "full"):
        raise TofuDataError(
            f"rows must be 'legacy' (TOFU's first-300 rule) or 'full', got {rows!r}"
        )
    check_forget_question(forget_question)
    check_forget_question(retain_question, "retain_question")
    asked = {"forget": forget_question, "retain": retain_question}
    limits = row_limits(max_rows_per_set)
    docs: list[dict[str, Any]] = []
    for eval_set in EVAL_SETS:
        records = read_split(eval_set.source_file(forget_split), data_dir)
        if forget_rows and eval_set.name == "forget":
            numbers = forget_row_numbers(forget_rows, len(records))
        else:
            numbers = list(range(eval_set.row_count(len(records), rows)))
        limit = limits.get(eval_set.name)
        if limit is not None:
            numbers = numbers[:limit]
        source = eval_set.source_file(forget_split)
        paraphrased = asked.get(eval_set.name) == "paraphrased"
        for index in numbers:
            record = records[index]
            question = paraphrased_question(record, source, index) if paraphrased else None
            docs.append(
                {
                    "set": eval_set.name,
                    "row": index,
                    "question": question or record["question"],
                    "answer": record["answer"],
                    "base_answer": record[eval_set.base_answer_field],
                    "perturbed_answers": list(record["perturbed_answer"]),
                }
            )
    return docs


# ---------------------------------------------------------------------- holdout rows
@dataclass(frozen=True)
class Holdout:
    """The holdout rows of a run, where they come from, or why there are none."""

    docs: tuple[dict[str, Any], ...]
    source: str | None
    reason: str | None = None  # set when there are no rows


_OFF = ("none", "false", "off", "")


def _default_holdout(forget_split: str, data_dir: str | os.PathLike | None) -> str | None:
    """TOFU's holdout split of the same size (holdout01 for forget01): on the hub, or in the
    local directory when it holds it."""
    name = "holdout" + forget_split.removeprefix("forget")
    local = resolve_data_dir(data_dir)
    if local is None or (local / f"{name}.json").is_file():
        return name
    return None


def _holdout_records(spec: str, data_dir: str | os.PathLike | None) -> list[dict[str, Any]]:
    name, rows = split_named_slice(spec) if "[" in spec else (spec, None)
    if rows is not None:
        records = read_split(name, data_dir)
        try:
            chosen = slice_range(rows, len(records))
        except RowSliceError as err:
            raise TofuDataError(f"holdout {spec!r}: {err} of {name}") from err
        return [{**records[i], "_row": i} for i in chosen]
    path = Path(spec).expanduser()
    if path.suffix in (".json", ".jsonl") and path.is_file():
        records = parse_jsonl(path)
        validate_rows(records, SplitSpec(None, QA_FIELDS), path)
        return records
    if re.fullmatch(r"holdout\d+", spec):
        return read_split(spec, data_dir)
    raise TofuDataError(
        f"holdout {spec!r} is neither a TOFU holdout split (holdout01/05/10), a row slice of a "
        f"TOFU file such as 'retain_perturbed[360:400]', nor an existing .json/.jsonl file"
    )


def holdout_rows(
    spec: str | bool | None,
    forget_split: str,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    forget_questions: Iterable[str] = (),
) -> Holdout:
    """The holdout documents: question/answer rows the evaluated model never saw.

    ``spec``: None for TOFU's holdout split matching ``forget_split`` (hub, or the local
    directory when it has the file), ``"none"`` for none, ``"holdout05"``, a row slice of a
    local TOFU file (``"retain_perturbed[360:400]"``) or a JSON Lines file of
    {"question", "answer"} rows. Rows whose question is a forget question are refused: a
    forget row cannot be a non-member.
    """
    if spec is False or (isinstance(spec, str) and spec.strip().lower() in _OFF):
        return Holdout((), None, "no holdout rows (holdout is off)")
    chosen = _default_holdout(forget_split, data_dir) if spec in (None, True) else str(spec)
    if chosen is None:
        return Holdout(
            (), None,
            "no holdout rows: the local TOFU directory has no holdout file; set the task option "
            "holdout (e.g. a row slice the model never saw)",
        )  # fmt: skip
    records = _holdout_records(chosen.strip(), data_dir)[:limit]
    forget = set(forget_questions)
    clash = [r["question"] for r in records if r["question"] in forget]
    if clash:
        raise TofuDataError(
            f"holdout {chosen!r}: {len(clash)} of its questions are forget-set questions (e.g. "
            f"{clash[0]!r}); holdout rows must be rows the model never saw"
        )
    docs = tuple(
        {
            "set": HOLDOUT_SET,
            "row": record.get("_row", index),
            "question": record["question"],
            "answer": record["answer"],
            "base_answer": record["answer"],
            "perturbed_answers": [],
        }
        for index, record in enumerate(records)
    )
    if not docs:
        return Holdout((), chosen, f"no holdout rows in {chosen!r}")
    return Holdout(docs, chosen)
