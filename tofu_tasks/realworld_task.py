"""The ``realworld_unlearn`` task: unlearning facts about real people.

One task scores the forget set (people the model should no longer know about) and the neighbour
set (other people it should still know) with the six per-set metrics. Cosine similarity compares
each generation with the model's own answer before unlearning (``pre_unlearning_reference``, made
by ``lm-unlearn reference --tasks realworld_unlearn``); entailment takes the generation as premise
and the golden answer as hypothesis. ``model_utility`` is the harmonic mean of the neighbour set's
six numbers and ``forget_efficacy`` 1 − the mean of the forget set's five.

Options (``--metadata``): ``forget_data`` / ``neighbor_data`` (a JSON file in the shipped schema;
default the project's own sets), ``max_rows_per_set`` (an int or {"forget": N, "neighbor": M}),
plus the TOFU tasks' ``prompt_format``, ``pre_unlearning_reference``, ``embedding_model``,
``nli_model``, ``aux_device`` and ``generation_max_length``.
"""

from __future__ import annotations

from typing import Any

from harness_ext.lm_eval_plugin.requests import TaskSetupError
from harness_ext.lm_eval_plugin.task_provenance import TaskProvenance
from harness_ext.lm_eval_plugin.unlearning_task import UnlearningTask
from harness_ext.metrics.references import ScoredReference
from tofu_tasks import data
from tofu_tasks import metric_list as tofu_metric_list
from tofu_tasks.documents import interleave_sets
from tofu_tasks.eval_sets import REALWORLD_SETS
from tofu_tasks.options import RealWorldOptions
from tofu_tasks.realworld import read_realworld
from tofu_tasks.reference_files import load_reference


def realworld_docs(
    forget_data: str | None = None,
    neighbor_data: str | None = None,
    max_rows_per_set: int | dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Documents of the forget and neighbour sets, in order."""
    limits = data.row_limits(max_rows_per_set, [s.name for s in REALWORLD_SETS])
    sources = {"forget": forget_data or "forget", "neighbor": neighbor_data or "neighbor"}
    docs = []
    for eval_set in REALWORLD_SETS:
        rows = read_realworld(sources[eval_set.name])[: limits.get(eval_set.name)]
        for index, row in enumerate(rows):
            docs.append(
                {
                    "scenario": "realworld",
                    "set": eval_set.name,
                    "row": index,
                    "person": row["person"],
                    "question": row["question"],
                    "answer": row["golden_answer"],
                    "base_answer": row["paraphrased_answer"],
                    "perturbed_answers": list(row["perturbed_answer"]),
                }
            )
    return docs


class RealWorldUnlearnTask(UnlearningTask):
    """Forget set + neighbour set of real people; see the module docstring."""

    scenario = "realworld"
    MEMBERSHIP = False
    EVAL_SETS = REALWORLD_SETS
    options_class = RealWorldOptions

    @classmethod
    def metric_list(cls) -> list[dict[str, Any]]:
        tofu_metric_list.register()
        return tofu_metric_list.metric_list(cls.scenario)

    def documents(self) -> list[dict[str, Any]]:
        options = self.options
        docs = realworld_docs(options.forget_data, options.neighbor_data, options.max_rows_per_set)
        return interleave_sets(docs)

    def load_reference(self, path: str) -> ScoredReference:
        return load_reference(path)

    METRIC_VARIANTS = {
        "forget_truth_ratio": "TOFU: mean of min(R, 1/R)",
        "forget_truth_ratio_closer_look": "closer look: 1 - mean of min(R, 1/R)",
        "model_utility": "harmonic mean of the neighbour set's 6 metrics",
    }

    def _data_source(self) -> dict[str, str]:
        return {
            "forget": self.options.forget_data or "lm-unlearn realworld_data/forget.json",
            "neighbor": self.options.neighbor_data or "lm-unlearn realworld_data/neighbor.json",
        }

    def _provenance(self) -> TaskProvenance:
        record = super()._provenance()
        record.scenario = "realworld"
        return record

    def _holdout_provenance(self) -> None:
        """No membership inference in this scenario: its forget set has no holdout split."""
        if self.options.holdout not in (None, "none"):
            raise TaskSetupError("realworld_unlearn has no holdout rows: drop holdout")
        return None

    def _check_retain_reference(self, docs: list[dict], run_docs: list[dict]) -> None:
        """No retain model in this scenario: forget quality is not reported."""
        if self.retain_reference is not None:
            raise TaskSetupError("realworld_unlearn has no forget quality: drop retain_reference")

    def process_results(self, doc: dict, results: list) -> dict[str, Any]:
        out = super().process_results(doc, results)
        names = {entry["metric"] for entry in self.config.metric_list}
        return {k: v for k, v in out.items() if k in names}
