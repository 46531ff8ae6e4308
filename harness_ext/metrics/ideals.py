"""Which value of each metric is best: the one place rankings, checkpoint selection, plot
captions and the results read it from.

Three kinds of ideal:

* ``higher``: utility, forget quality, forget efficacy, fluency (token entropy);
* ``lower``: what falls as a model forgets, on the forget set (ROUGE-L, probability, cosine
  similarity, entailment, the closer-look truth ratio, extraction strength, exact
  memorisation);
* ``retain``: the value of the retain model, which never saw the forget set. A model can miss
  it on either side: privleak (0 by definition: negative, the forget rows still look familiar;
  positive, they look *less* familiar than unseen text, a sign of over-unlearning), every
  membership-inference AUC (the retain model's own AUC on the same rows, not 0 or 0.5), and
  TOFU's forget truth ratio. Any metric can be ranked this way on request (``closest:METRIC``):
  forget ROUGE-L or probability "at matched forgetting".

lm-eval's boolean ``higher_is_better`` cannot say "closest to": those metrics declare ``None``
(lm-eval prints no arrow) and the results say what is meant (``metric_ideals``).

>>> ideal_of("privleak").distance(125.0), ideal_of("privleak").distance(-5.0)
(125.0, 5.0)
>>> ideal_of("mia_min_k_auc").distance(0.40, retain_value=0.74) > ideal_of("mia_min_k_auc").distance(0.74, retain_value=0.74)
True
>>> ideal_of("forget_rougeL_recall").kind, parse_ranking("closest:forget_rougeL_recall")[1].kind
('lower', 'retain')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HIGHER, LOWER, RETAIN = "higher", "lower", "retain"
CLOSEST_PREFIX = "closest:"

# On the forget set these fall as a model forgets.
FORGET_LOWER = {
    "rougeL_recall", "prob", "cosine_similarity", "entailment", "bertscore_f1",
    "truth_ratio_closer_look", "extraction_strength", "exact_memorization",
    "knowmem_rougeL_f1", "verbmem_rougeL_f1",  # MUSE's memorisation of the forget set
    # WMDP's hazardous knowledge (chance is 0.25) and its change from before unlearning
    "wmdp_acc", "wmdp_bio_acc", "wmdp_chem_acc", "wmdp_cyber_acc", "wmdp_acc_change",
    "exact_match",  # LUME's answers to forget questions
}  # fmt: skip
FORGET_PREFIX = "forget_"
MIA_PREFIX, MIA_SUFFIX = "mia_", "_auc"


class IdealError(ValueError):
    """A ranking that cannot be applied (no retain value to be close to)."""


@dataclass(frozen=True)
class Ideal:
    """The best value of a metric. ``fixed``: the retain model's value when the definition
    gives it (privleak: 0), so that no retain model is needed to rank by it."""

    kind: str
    fixed: float | None = None

    @property
    def higher_is_better(self) -> bool | None:
        """lm-eval's flag: None for "closest to the retain model's value"."""
        return None if self.kind == RETAIN else self.kind == HIGHER

    def target(self, retain_value: float | None = None) -> float | None:
        """The value to be close to (``retain`` kind), None when unknown."""
        return self.fixed if self.fixed is not None else retain_value

    def distance(self, value: float, retain_value: float | None = None) -> float:
        """How far ``value`` is from the best, in the metric's units (0 is the best; only the
        order matters for ``higher`` and ``lower``)."""
        if self.kind == HIGHER:
            return -value
        if self.kind == LOWER:
            return value
        target = self.target(retain_value)
        if target is None:
            raise IdealError("no retain-model value to be close to")
        return abs(value - target)

    def better(self, value: float, than: float, retain_value: float | None = None) -> bool:
        return self.distance(value, retain_value) < self.distance(than, retain_value)

    def describe(self, retain_value: float | None = None) -> str:
        """A caption: "higher is better", "lower is better", "best: 0, the retain model's
        value", "best: the retain model's value (0.740)"."""
        if self.kind != RETAIN:
            return f"{self.kind} is better"
        if self.fixed is not None:
            return f"best: {self.fixed:g}, the retain model's value"
        shown = "" if retain_value is None else f" ({retain_value:.3f})"
        return f"best: the retain model's value{shown}"


def ideal_of(metric: str) -> Ideal:
    """The declared ideal of a metric the tasks report (``higher`` for names it does not know:
    utility and general-ability metrics)."""
    if metric == "privleak":
        return Ideal(RETAIN, fixed=0.0)
    if metric == "mia_reference_auc":  # the retain model against itself: every score 0, ties
        return Ideal(RETAIN, fixed=0.5)
    if metric.startswith(MIA_PREFIX) and metric.endswith(MIA_SUFFIX):
        return Ideal(RETAIN)
    if metric == "forget_truth_ratio":
        return Ideal(RETAIN)
    # forget_<name>, or forget_<part>_<name> (LUME's forget_task1_sc_rougeL_recall)
    if metric.startswith(FORGET_PREFIX) and any(
        metric == FORGET_PREFIX + name or metric.endswith("_" + name) for name in FORGET_LOWER
    ):
        return Ideal(LOWER)
    return Ideal(HIGHER)


def parse_ranking(text: str) -> tuple[str, Ideal]:
    """``METRIC`` (its declared ideal) or ``closest:METRIC`` (closest to the retain model's
    value, e.g. forget ROUGE-L at matched forgetting)."""
    text = text.strip()
    if text.startswith(CLOSEST_PREFIX):
        metric = text.removeprefix(CLOSEST_PREFIX).strip()
        declared = ideal_of(metric)
        return metric, declared if declared.kind == RETAIN else Ideal(RETAIN)
    return text, ideal_of(text)


def finite(value: object) -> float | None:
    """A metric value as a float; None for "N/A (...)" strings, booleans, dicts and NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)
