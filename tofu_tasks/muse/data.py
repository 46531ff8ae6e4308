"""Loading and checking MUSE's data: ``muse-bench/MUSE-News`` and ``muse-bench/MUSE-Books``.

Each corpus is one Hugging Face dataset with several configs (``raw``, ``verbmem``, ``knowmem``,
``privleak``, and News's ``scal`` / ``sust``), each with its splits. They come from the hub by
default, or from a local folder with the same files and dataset card (``data_dir``, else
``MUSE_DATA_DIR``): ``datasets.load_dataset`` reads either the same way. Every split is checked
when it is read: rows present, the fields MUSE's metrics need, each a non-empty string. A problem
raises :class:`MuseDataError` naming the dataset, config, split, row and field.

>>> schema_of("knowmem", "forget_qa")
('question', 'answer')
>>> hub_id("news")
'muse-bench/MUSE-News'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tofu_tasks.hub_data import load_split, local_folder

CORPORA = {"news": "muse-bench/MUSE-News", "books": "muse-bench/MUSE-Books"}
DATA_DIR_ENV = "MUSE_DATA_DIR"
TEXT = ("text",)
# The fields each config's splits carry (those MUSE's metrics read).
CONFIG_FIELDS = {
    "raw": TEXT,  # forget, retain1, retain2, holdout: unlearning's training text
    "verbmem": ("prompt", "gt"),  # forget: a passage's beginning and its continuation
    "knowmem": ("question", "answer"),  # forget_qa, retain_qa and their *_icl examples
    "privleak": TEXT,  # forget, retain, holdout: membership inference
    "scal": TEXT,  # News: forget_1..forget_4, growing forget sets (scalability)
    "sust": TEXT,  # News: forget_1..forget_4, successive requests (sustainability)
}


class MuseDataError(ValueError):
    """MUSE data is missing, unreadable or not shaped as expected."""


def hub_id(corpus: str) -> str:
    """The hub dataset of a corpus: ``news`` or ``books``."""
    try:
        return CORPORA[corpus]
    except KeyError:
        raise MuseDataError(
            f"unknown MUSE corpus {corpus!r}; choose one of {', '.join(CORPORA)}"
        ) from None


def schema_of(config: str, split: str) -> tuple[str, ...]:
    """The fields a split must carry."""
    try:
        return CONFIG_FIELDS[config]
    except KeyError:
        raise MuseDataError(
            f"unknown MUSE config {config!r} (split {split!r}); the configs are "
            f"{', '.join(CONFIG_FIELDS)}"
        ) from None


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The local dataset folder: ``data_dir``, else ``$MUSE_DATA_DIR``, else None (the hub).
    A folder that does not exist, or holds no dataset card naming its configs, is an error."""
    return local_folder(data_dir, DATA_DIR_ENV, "MUSE", MuseDataError)


def read_split(
    corpus: str, config: str, split: str, data_dir: str | os.PathLike | None = None
) -> list[dict[str, Any]]:
    """The checked rows of one split, from the local folder or the hub."""
    fields = schema_of(config, split)
    folder = resolve_data_dir(data_dir)
    rows, where = load_split(hub_id(corpus), config, split, folder, DATA_DIR_ENV, MuseDataError)
    check_rows(rows, fields, where)
    return rows


def check_rows(rows: list[dict[str, Any]], fields: tuple[str, ...], where: str) -> None:
    """Rows present, each with every field as a non-empty string."""
    if not rows:
        raise MuseDataError(f"{where} has no rows")
    for index, row in enumerate(rows):
        for name in fields:
            value = row.get(name)
            if not isinstance(value, str) or not value.strip():
                found = "missing" if name not in row else f"{type(value).__name__} {value!r:.40}"
                raise MuseDataError(
                    f"{where} row {index}: field {name!r} must be non-empty text, got {found} "
                    f"(fields of this split: {', '.join(fields)})"
                )
