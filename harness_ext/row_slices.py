"""Rows of a file named by Python-style slices, one grammar for every option that takes them.

``"360:400"`` (a slice), ``"10:20,30:40"`` (several, separated by commas) and
``"forget10[0:360]"`` (a file's name with a slice) are read here, for the task options
``forget_rows`` and ``holdout``, the training rows of ``lm-unlearn train`` / ``finetune``, and the
audit's ``--relearn-rows``; each caller words its own error around :class:`RowSliceError`.

>>> parse_slice("360:400"), parse_slice(":40"), parse_slice("-40:")
((360, 400), (None, 40), (-40, None))
>>> split_named_slice("forget10[0:360]"), split_named_slice("retain90")
(('forget10', '0:360'), ('retain90', None))
>>> row_numbers("1:3,5:6", 10)
[1, 2, 5]
>>> row_slices([0, 1, 2, 10, 11])
[(0, 3), (10, 12)]
"""

from __future__ import annotations

import re

_NAMED = re.compile(r"^(?P<name>[^\[\]]+?)\s*(?:\[(?P<slice>[^\[\]]*)\])?$")


class RowSliceError(ValueError):
    """A slice that is malformed, empty, outside the rows, or names a row twice."""


def parse_slice(text: str) -> tuple[int | None, int | None]:
    """``"start:stop"`` → (start, stop), either None when left out; negatives count from the end."""
    bounds = str(text).split(":")
    if len(bounds) != 2 or not all(re.fullmatch(r"\s*(-?\d+)?\s*", b) for b in bounds):
        raise RowSliceError(f"expected start:stop, got {text!r}")
    start, stop = (int(b) if b.strip() else None for b in bounds)
    return start, stop


def slice_range(text: str, available: int) -> range:
    """The rows ``start:stop`` names among ``available`` rows: not empty, none outside them.
    Negative bounds are refused here: a row number means the same row whatever the file's size."""
    start, stop = parse_slice(text)
    start = 0 if start is None else start
    stop = available if stop is None else stop
    if not 0 <= start < stop <= available:
        raise RowSliceError(f"{text!r} is outside the {available} rows (or empty)")
    return range(start, stop)


def split_named_slice(item: str) -> tuple[str, str | None]:
    """``"forget10[0:360]"`` → ("forget10", "0:360"); a name without brackets → (name, None)."""
    found = _NAMED.match(str(item).strip())
    if not found:
        raise RowSliceError(f"expected name or name[start:stop], got {item!r}")
    return found["name"].strip(), found["slice"]


def row_numbers(text: str, available: int) -> list[int]:
    """Slices separated by commas → the row numbers, in order; none may appear twice."""
    rows = [row for part in str(text).split(",") for row in slice_range(part, available)]
    if len(set(rows)) != len(rows):
        raise RowSliceError(f"{text!r} names some rows twice")
    return rows


def row_slices(rows: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs of row numbers as (start, stop) slices (the inverse of row_numbers)."""
    slices: list[tuple[int, int]] = []
    for row in rows:
        if slices and slices[-1][1] == row:
            slices[-1] = (slices[-1][0], row + 1)
        else:
            slices.append((row, row + 1))
    return slices
