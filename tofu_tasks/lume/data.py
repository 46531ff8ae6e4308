"""Loading and checking LUME's data (SemEval-2025 Task 4; Apache-2.0): ``forget.jsonl`` and
``retain.jsonl`` of the official repository ``amazon-science/lume-llm-unlearning``.

The files are read from a local folder (``data_dir``, else ``LUME_DATA_DIR``) or downloaded once
from the repository (``data/<split>.jsonl``) into the project's cache. Each row has ``id`` (a
document id in quotes, then ``sc<k>`` for a sentence completion or ``qa<k>`` for a question about
that document), ``input`` (the prompt), ``output`` (the expected completion or answer) and
``task`` (``Task1`` creative documents, ``Task2`` synthetic biographies with personal data,
``Task3`` real biographies). Every row is checked when read; a problem raises
:class:`LumeDataError` naming the file, line and field.

>>> kind_of('"8f24c511-a319-4a9f-80c2-ca6fac131233"sc1'), kind_of('"12762334"qa0')
('sc', 'qa')
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from pathlib import Path
from typing import Any

REPOSITORY = "amazon-science/lume-llm-unlearning"
RAW_URL = "https://raw.githubusercontent.com/" + REPOSITORY + "/main/data/{split}.jsonl"
DATA_DIR_ENV = "LUME_DATA_DIR"
SPLITS = ("forget", "retain")
SUBTASKS = ("Task1", "Task2", "Task3")
FIELDS = ("id", "input", "output", "task")
_KIND = re.compile(r"(sc|qa)\d+$")


class LumeDataError(ValueError):
    """LUME data is missing, unreadable or not shaped as expected."""


def kind_of(row_id: str) -> str | None:
    """``sc`` (sentence completion) or ``qa`` (question), from the end of a row's id."""
    found = _KIND.search(row_id)
    return found.group(1) if found else None


def document_of(row_id: str) -> str:
    """The document a row asks about: its id without the ``sc<k>`` / ``qa<k>`` ending.

    >>> document_of('"12762334"qa0') == document_of('"12762334"sc1')
    True
    """
    return _KIND.sub("", row_id)


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The local folder: ``data_dir``, else ``$LUME_DATA_DIR``, else None (the repository)."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV)
    if not chosen:
        return None
    folder = Path(chosen).expanduser()
    if not folder.is_dir():
        raise LumeDataError(f"LUME data folder {folder} does not exist")
    return folder


def split_file(split: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The file of a split: in the local folder, else downloaded once into the cache."""
    if split not in SPLITS:
        raise LumeDataError(f"unknown LUME split {split!r}; the splits are {', '.join(SPLITS)}")
    folder = resolve_data_dir(data_dir)
    if folder is not None:
        found = folder / f"{split}.jsonl"
        if not found.is_file():
            raise LumeDataError(f"{folder} has no {split}.jsonl (a LUME folder holds {SPLITS})")
        return found
    from harness_ext.assets import cache_dir

    cached = cache_dir() / "lume" / f"{split}.jsonl"
    if not cached.is_file():
        url = RAW_URL.format(split=split)
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                content = response.read()
        except OSError as err:
            raise LumeDataError(
                f"cannot download {url} ({err}); offline, set {DATA_DIR_ENV} (or the task "
                f"option data_dir) to a folder holding forget.jsonl and retain.jsonl"
            ) from err
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(content)
        os.replace(partial, cached)
    return cached


def read_split(split: str, data_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The checked rows of a split, in file order, each with its ``kind``."""
    path = split_file(split, data_dir)
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise LumeDataError(f"{path} line {number}: not valid JSON ({err.msg})") from err
        rows.append(check_row(row, f"{path} line {number}"))
    if not rows:
        raise LumeDataError(f"{path} has no rows")
    return rows


def check_row(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise LumeDataError(f"{where}: expected a JSON object")
    for name in FIELDS:
        value = row.get(name)
        if not isinstance(value, str) or not value.strip():
            raise LumeDataError(
                f"{where}: field {name!r} must be non-empty text, got {value!r:.40}"
            )
    if row["task"] not in SUBTASKS:
        raise LumeDataError(
            f"{where}: task must be one of {', '.join(SUBTASKS)}, got {row['task']!r}"
        )
    kind = kind_of(row["id"])
    if kind is None:
        raise LumeDataError(f"{where}: id {row['id']!r} ends in neither sc<k> nor qa<k>")
    return {**{name: row[name] for name in FIELDS}, "kind": kind}


def split_and_subtask(name: str) -> tuple[str, str | None]:
    """``"forget"`` → ("forget", None); ``"forget/Task2"`` → ("forget", "Task2"): a split, or one
    subtask's rows of it (as training data names them: ``lume:forget/Task2[:48]``).

    >>> split_and_subtask("retain/Task2")
    ('retain', 'Task2')
    """
    split, _, subtask = name.partition("/")
    if split not in SPLITS or (subtask and subtask not in SUBTASKS):
        raise LumeDataError(
            f"unknown LUME rows {name!r}: a split ({', '.join(SPLITS)}), optionally one "
            f"subtask's rows of it (forget/Task2; subtasks {', '.join(SUBTASKS)})"
        )
    return split, subtask or None


def read_rows(name: str, data_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The rows :func:`split_and_subtask` names, in file order: the numbering row slices use."""
    split, subtask = split_and_subtask(name)
    rows = read_split(split, data_dir)
    return [row for row in rows if subtask is None or row["task"] == subtask]
