"""How much the gap between two runs on the same rows moves with the rows drawn: the noise a
recovery's denominator must exceed to mean anything.

Both runs scored the same documents (the unlearned model and the model before unlearning, say).
The rows are resampled with replacement, within each set, keeping the pairing; each metric is
aggregated on the draw in both runs exactly as the task aggregates it (a mean, an AUC, a KS
p-value), and the noise is twice the standard deviation of the difference over the draws: a gap
smaller than that is one the rows cannot tell from none.

>>> first = {("forget", i): {"m": v} for i, v in enumerate([0.1, 0.2, 0.3, 0.4])}
>>> second = {("forget", i): {"m": v + 0.5} for i, v in enumerate([0.1, 0.2, 0.3, 0.4])}
>>> mean = lambda items: sum(items) / len(items)
>>> gap_noise(first, second, {"m": mean})["m"] < 1e-9   # a constant gap has no noise
True
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

RESAMPLES = 200
SPREAD = 2.0  # standard deviations
Aggregation = Callable[[Sequence[Any]], Any]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)


def gap_noise(
    first: Mapping[tuple[str, int], Mapping[str, Any]],
    second: Mapping[tuple[str, int], Mapping[str, Any]],
    aggregations: Mapping[str, Aggregation],
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, float]:
    """Per metric: ``SPREAD`` standard deviations of aggregate(second) − aggregate(first) over
    paired bootstrap draws of the rows both runs scored (keys: (set, row)). A metric that is
    not a number in most draws gets none."""
    keys = sorted(set(first) & set(second))
    by_set: dict[str, list[tuple[str, int]]] = {}
    for key in keys:
        by_set.setdefault(key[0], []).append(key)
    rng = random.Random(seed)
    draws = [
        [key for members in by_set.values() for key in rng.choices(members, k=len(members))]
        for _ in range(resamples)
    ]
    noise = {}
    for metric, aggregate in aggregations.items():
        gaps = []
        for draw in draws:
            a = _number(aggregate([first[k].get(metric) for k in draw]))
            b = _number(aggregate([second[k].get(metric) for k in draw]))
            if a is not None and b is not None:
                gaps.append(b - a)
        if len(gaps) * 2 > resamples:
            noise[metric] = SPREAD * statistics.pstdev(gaps)
    return noise
