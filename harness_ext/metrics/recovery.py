"""Does the forgetting hold? The numbers of ``lm-unlearn audit``: forget metrics before and after
an attack (relearning, quantisation, paraphrased questions) and how much of the forgotten
knowledge came back.

Recovery is the share of the gap that unlearning opened which the attack closed again:

    recovery = (after − before) / (target − before)

with ``before`` the unlearned model's score, ``after`` its score once attacked and ``target`` the
score of the model before unlearning, each on the same rows. 0 means the attack brought nothing
back, 1 means the model scores as it did before unlearning (beyond 1: more than that). The
formula needs no direction: it holds for metrics that fall with forgetting (ROUGE-L, probability)
and for those that rise. When the gap target − before is within its noise (how much it moves
with the rows drawn, :mod:`harness_ext.metrics.noise`), the unlearned model already scores like
the target and the ratio would divide by almost nothing: it reads N/A.

An attack that can teach (relearning) may raise the scores of a model that never knew the forget
rows. It is run the same way on a control, the retain model: ``gain`` is after − before on the
unlearned model, ``control_gain`` the same on the control, and ``difference`` their difference,
what the attack brought back beyond what it teaches any model.

>>> recovery(before=0.25, after=0.5, target=0.75)
0.5
>>> recovery(before=0.2, after=0.2, target=0.2) is None   # no gap to close
True
>>> recovery(before=0.30, after=0.40, target=0.31, noise=0.05)
'N/A (the unlearned model already scores like the target: gap 0.0100 within the noise 0.0500)'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

FORGET_PREFIX = "forget_"
# Shown first (TOFU's, then MUSE's); every other forget_* metric of the results follows in name
# order.
LEADING_FORGET_METRICS = ("forget_rougeL_recall", "forget_prob", "forget_truth_ratio",
                          "forget_verbmem_rougeL_f1", "forget_knowmem_rougeL_f1")  # fmt: skip
# Below this the unlearned model and the target score alike: no gap, no recovery.
MIN_GAP = 1e-9


def number(value: Any) -> float | None:
    """A metric value as a float; None for "N/A (...)" strings, dicts, booleans and NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)


def recovery(
    before: Any, after: Any, target: Any, noise: float | None = None
) -> float | str | None:
    """(after − before) / (target − before); None when a value is missing or there is no gap,
    N/A with the numbers when the gap is within its noise."""
    b, a, t = number(before), number(after), number(target)
    if b is None or a is None or t is None or abs(t - b) < MIN_GAP:
        return None
    if noise is not None and abs(t - b) <= noise:
        return (
            f"N/A (the unlearned model already scores like the target: gap {abs(t - b):.4f} "
            f"within the noise {noise:.4f})"
        )
    return (a - b) / (t - b)


def _gain(before: Any, after: Any) -> float | None:
    b, a = number(before), number(after)
    return None if a is None or b is None else a - b


def forget_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The forget-set metrics of a run (``forget_*``), the leading three first; values as given
    (numbers or "N/A (...)" reasons), structured per-sample values left out."""
    names = [k for k in metrics if k.startswith(FORGET_PREFIX) and not isinstance(metrics[k], dict)]
    ordered = [m for m in LEADING_FORGET_METRICS if m in names]
    ordered += sorted(set(names) - set(ordered))
    return {name: metrics[name] for name in ordered}


def metric_names(*runs: Mapping[str, Any] | None) -> list[str]:
    """The forget metrics any of the runs has, in table order."""
    merged: dict[str, Any] = {}
    for run in runs:
        merged.update(forget_metrics(run or {}))
    return list(forget_metrics(merged))


def comparison(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    target: Mapping[str, Any] | None = None,
    noise: Mapping[str, float] | None = None,
    control: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One row per forget metric: before, after, gain, target, recovery and, with a control
    (its scores before and after the same attack), its gain and the difference."""
    rows = []
    for name in metric_names(before, after, target):
        b, a = before.get(name), after.get(name)
        t = (target or {}).get(name)
        gain = _gain(b, a)
        row = {
            "metric": name,
            "before": b,
            "after": a,
            "gain": gain,
            "target": t,
            "recovery": recovery(b, a, t, (noise or {}).get(name)),
            "gap_noise": (noise or {}).get(name),
        }
        if control is not None:
            cb, ca = control[0].get(name), control[1].get(name)
            control_gain = _gain(cb, ca)
            row.update({
                "control_before": cb,
                "control_after": ca,
                "control_gain": control_gain,
                "difference": None if gain is None or control_gain is None else gain - control_gain,
            })  # fmt: skip
        rows.append(row)
    return rows
