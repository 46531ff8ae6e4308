"""The model before unlearning's answers to the WMDP task's questions, read from its scoring run
(its folder, results file or samples file): per (set, row), the question and whether the model
chose the right answer. The task compares a run with it on exactly the questions the run asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness_ext.metrics.references import ReferenceError
from harness_ext.provenance import content_hash
from tofu_tasks.wmdp.metric_list import set_metric


@dataclass(frozen=True)
class BeforeUnlearning:
    source: str
    answers: dict[tuple[str, int], tuple[str, float]]  # (set, row) -> (question, accuracy)
    identity: str  # the scoring run's settings hash, else a hash of the answers
    name: str

    def describe(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for set_name, _ in self.answers:
            counts[set_name] = counts.get(set_name, 0) + 1
        return {"source": self.source, "name": self.name, "identity": self.identity,
                "kind": "lm-eval-samples", "rows": counts}  # fmt: skip

    def check_covers(self, docs: list[dict[str, Any]]) -> None:
        """Every question of the run is in the reference, asking the same."""
        for doc in docs:
            found = self.answers.get((doc["set"], doc["row"]))
            if found is None:
                raise ReferenceError(
                    f"{self.source}: the model before unlearning was not scored on "
                    f"{doc['set']} row {doc['row']}; score it with the same sets and rows"
                )
            if found[0] != doc["question"]:
                raise ReferenceError(
                    f"{self.source}: {doc['set']} row {doc['row']} asks {found[0]!r:.60}, the "
                    f"data asks {doc['question']!r:.60}; was it scored on other data?"
                )

    def accuracy(self, doc: dict[str, Any]) -> float:
        return self.answers[(doc["set"], doc["row"])][1]


def load_before_unlearning(path: str | Path) -> BeforeUnlearning:
    """The reference at ``path``: a wmdp_unlearn run (folder, results or samples file)."""
    from tofu_tasks.reference_files import read_samples, samples_path, scoring_run_of

    found = samples_path(path)
    answers = {}
    for sample in read_samples(found):
        doc = sample.get("doc") or {}
        value = sample.get(set_metric(doc.get("set", "")))
        if isinstance(value, (int, float)) and "row" in doc:
            answers[(doc["set"], int(doc["row"]))] = (doc["question"], float(value))
    if not answers:
        raise ReferenceError(f"{found}: no rows of the WMDP task (a wmdp_unlearn samples file)")
    run = scoring_run_of(found) or {}
    if run.get("settings_sha256"):
        identity, name = f"run:{run['settings_sha256']}", str(run.get("name") or found.name)
    else:
        rows = [{"set": s, "row": r, "question": q, "acc": a}
                for (s, r), (q, a) in sorted(answers.items())]  # fmt: skip
        identity, name = f"rows:{content_hash(rows)}", found.name
    return BeforeUnlearning(str(path), answers, identity, name)
