"""The real-world unlearning data: QAs about real public figures, shipped with the project.

``forget.json`` holds the people a model should unlearn, ``neighbor.json`` other people whose
knowledge it should keep (scored), ``retain.json`` a third group a regulariser trains on (never
scored, so utility is measured on people the training did not see) (see ``realworld_data/CARD.md``; CC-BY-4.0). Users bring their own sets in
the same schema; :func:`read_realworld` checks every row and names the first bad one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "realworld_data"
FIELDS = ("person", "question", "golden_answer", "paraphrased_answer", "perturbed_answer")
PERTURBED_COUNT = 5


class RealWorldDataError(ValueError):
    """A real-world QA file that does not follow the schema."""


def shipped_file(name: str) -> Path:
    """``forget``, ``neighbor`` or ``retain``: the project's own sets."""
    path = DATA_DIR / f"{name}.json"
    if not path.is_file():
        raise RealWorldDataError(
            f"no shipped real-world set {name!r}; choose forget, neighbor or retain"
        )
    return path


def check_row(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise RealWorldDataError(f"{where}: expected an object with {', '.join(FIELDS)}")
    missing = [f for f in FIELDS if f not in row]
    if missing:
        raise RealWorldDataError(f"{where}: missing field(s) {', '.join(missing)}")
    for name in FIELDS[:-1]:
        if not isinstance(row[name], str) or not row[name].strip():
            raise RealWorldDataError(f"{where}: {name} must be a non-empty string")
    perturbed = row["perturbed_answer"]
    if not isinstance(perturbed, list) or not all(
        isinstance(p, str) and p.strip() for p in perturbed
    ):
        raise RealWorldDataError(f"{where}: perturbed_answer must be a list of non-empty strings")
    if len(perturbed) != PERTURBED_COUNT or len(set(perturbed)) != PERTURBED_COUNT:
        raise RealWorldDataError(
            f"{where}: perturbed_answer needs {PERTURBED_COUNT} distinct answers, got "
            f"{len(set(perturbed))} distinct of {len(perturbed)}"
        )
    if row["golden_answer"] in perturbed:
        raise RealWorldDataError(f"{where}: a perturbed answer equals the golden answer")
    return {name: row[name] for name in FIELDS}


def read_realworld(source: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a real-world QA file (a path, or ``forget`` / ``neighbor`` / ``retain`` for the
    shipped sets)."""
    path = Path(source)
    if not path.is_file():
        path = shipped_file(str(source))
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RealWorldDataError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(rows, list) or not rows:
        raise RealWorldDataError(f"{path}: expected a non-empty JSON list of rows")
    checked = [check_row(row, f"{path} row {i}") for i, row in enumerate(rows)]
    seen: dict[str, int] = {}
    for index, row in enumerate(checked):
        if row["question"] in seen:
            raise RealWorldDataError(
                f"{path} row {index}: duplicate question (also row {seen[row['question']]})"
            )
        seen[row["question"]] = index
    return checked
