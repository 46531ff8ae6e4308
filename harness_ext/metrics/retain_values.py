"""The retain model's own values on a run's rows: the ideal of the metrics whose best value is
the retain model's (:mod:`harness_ext.metrics.ideals`), and the targets of matched forgetting.

A retain reference (its samples file, results file, run folder or ``lm-unlearn reference``
file) holds per row the retain model's generation, raw truth ratio, answer NLL and
membership-inference scores. From them, on exactly the rows a run scores:

* ``forget_rougeL_recall``, ``forget_prob``, ``forget_truth_ratio`` (TOFU's form) and
  ``forget_truth_ratio_closer_look``;
* ``mia_<attack>_auc``: the retain model's AUC on the same forget and holdout rows (so that
  privleak and a ranking by AUC compare like with like when a run scores a subset);
* ``privleak``: 0 and ``mia_reference_auc``: 0.5, by definition.

A metric the reference cannot give on every row reads a reason instead of a number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from harness_ext.metrics import privacy, tofu
from harness_ext.metrics.aggregate import not_computed
from harness_ext.metrics.eval_set import FORGET_SET
from harness_ext.metrics.references import ReferenceRow, ScoredReference

FORGET = FORGET_SET
HOLDOUT = privacy.HOLDOUT
MATCHABLE = ("rougeL_recall", "prob", "truth_ratio", "truth_ratio_closer_look")
FIXED = {"privleak": 0.0, privacy.mia_key("reference"): 0.5}
MIA_PREFIX = "mia_"
MIA_METRICS = tuple(privacy.mia_key(a) for a in privacy.MIA_ATTACKS if a != "reference")


class RetainValueError(ValueError):
    """A reference row that does not belong to the run's data."""


def _rows_by_key(reference: ScoredReference) -> dict[tuple[str, Any], ReferenceRow]:
    """The reference's rows by (set, row number), or (set, question) in files without rows."""
    return {
        (row.set_name, row.row if row.row is not None else row.question): row
        for row in reference.rows
    }


def matched_rows(
    reference: ScoredReference, docs: Sequence[dict], set_name: str
) -> tuple[list[tuple[dict, ReferenceRow]], list[int]]:
    """(pairs of a document and its reference row, rows the reference lacks) for one set;
    a row that asks another question is an error."""
    rows = _rows_by_key(reference)
    pairs, missing = [], []
    for doc in docs:
        if doc["set"] != set_name:
            continue
        row = rows.get((set_name, doc["row"])) or rows.get((set_name, doc["question"]))
        if row is None:
            missing.append(doc["row"])
            continue
        if row.question != doc["question"]:
            raise RetainValueError(
                f"{reference.source}: {set_name} row {doc['row']} asks {row.question!r}, the "
                f"data asks {doc['question']!r}; was it scored on other data?"
            )
        pairs.append((doc, row))
    return pairs, missing


def _row_value(kind: str, doc: dict, row: ReferenceRow) -> float | None:
    if kind == "rougeL_recall":
        return (
            None if row.generation is None else tofu.rouge_l_recall(row.generation, doc["answer"])
        )
    if kind == "prob":
        return None if row.answer_nll is None else math.exp(-row.answer_nll)
    ratio = row.raw_truth_ratio
    if ratio is None:
        return None
    if kind == "truth_ratio_closer_look":
        return tofu.truth_ratio_closer_look(ratio)
    return (
        tofu.truth_ratio_forget(ratio) if doc["set"] == FORGET else tofu.truth_ratio_utility(ratio)
    )


def set_metric_value(
    reference: ScoredReference, docs: Sequence[dict], set_name: str, kind: str
) -> float | str:
    """The mean of one per-row metric (``MATCHABLE``) of the reference over the run's rows."""
    pairs, missing = matched_rows(reference, docs, set_name)
    values = [_row_value(kind, doc, row) for doc, row in pairs]
    missing += [doc["row"] for (doc, _), v in zip(pairs, values, strict=True) if v is None]
    if missing or not values:
        wanted = sum(doc["set"] == set_name for doc in docs)
        shown = ", ".join(map(str, missing[:5])) + ("..." if len(missing) > 5 else "")
        return not_computed(
            f"the retain reference lacks {set_name}_{kind} on {len(missing) or 'all'} of the "
            f"{wanted} {set_name} rows scored (rows {shown or 'none'})"
        )
    return sum(values) / len(values)  # type: ignore[arg-type]


def mia_auc_value(reference: ScoredReference, docs: Sequence[dict], attack: str) -> float | str:
    """The retain model's AUC of one attack on the run's forget and holdout rows."""
    scores = {}
    for set_name in (FORGET, HOLDOUT):
        pairs, missing = matched_rows(reference, docs, set_name)
        values = [row.mia_scores.get(attack) for _, row in pairs]
        if missing or None in values:
            return not_computed(
                f"the retain reference has no {attack} scores on some of the run's {set_name} "
                f"rows; score it with this version and the same holdout"
            )
        scores[set_name] = values
    if not scores[FORGET] or not scores[HOLDOUT]:
        return not_computed("no forget or no holdout rows in the run")
    return privacy.auc(scores[FORGET], scores[HOLDOUT])


def retain_values(
    reference: ScoredReference, docs: Sequence[dict], answers: bool = True
) -> dict[str, float | str]:
    """Every retain-model value the reference gives on the run's rows (module docs);
    ``answers=False`` for a benchmark whose forget rows are texts, not answered questions
    (MUSE's): membership inference only."""
    values: dict[str, float | str] = dict(FIXED)
    if answers and any(doc["set"] == FORGET for doc in docs):
        for kind in MATCHABLE:
            values[f"{FORGET}_{kind}"] = set_metric_value(reference, docs, FORGET, kind)
    if any(doc["set"] == HOLDOUT for doc in docs):
        for metric in MIA_METRICS:
            attack = metric.removeprefix(MIA_PREFIX).removesuffix("_auc")
            values[metric] = mia_auc_value(reference, docs, attack)
    return values
