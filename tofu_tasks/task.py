"""The ``tofu_forgetXX_unlearn`` lm-eval tasks: TOFU's plug-in on the shared task class.

One task scores the Forget set of its split together with Retain, Real Authors and World Facts
(and the holdout rows of membership inference); each row is asked and its answers scored by
:class:`~harness_ext.lm_eval_plugin.unlearning_task.UnlearningTask`. What is TOFU's: the rows
(:mod:`tofu_tasks.documents`, from the hub or a local folder), the eval sets, the options
(:mod:`tofu_tasks.options`), the metric list and its aggregations (model utility, forget
efficacy, forget quality), and the reference files (TOFU's legacy logs among them).
"""

from __future__ import annotations

from typing import Any

from harness_ext.lm_eval_plugin.unlearning_task import UnlearningTask
from harness_ext.metrics import privacy
from harness_ext.metrics.references import ScoredReference
from tofu_tasks import data
from tofu_tasks import metric_list as tofu_metric_list
from tofu_tasks.documents import eval_docs, holdout_for
from tofu_tasks.eval_sets import EVAL_SETS
from tofu_tasks.options import TaskOptions
from tofu_tasks.reference_files import load_reference


class TofuUnlearnTask(UnlearningTask):
    """A TOFU forget split plus the three utility sets, scored with every metric."""

    scenario = "tofu"
    MEMBERSHIP = True
    EVAL_SETS = EVAL_SETS
    options_class = TaskOptions
    METRIC_VARIANTS = {
        "forget_truth_ratio": "TOFU: mean of min(R, 1/R)",
        "forget_truth_ratio_closer_look": "closer look: 1 - mean of min(R, 1/R)",
        "tofu_model_utility": "MU-9: harmonic mean of {prob, rougeL, truth_ratio} x {retain, RA, WF}",
        "model_utility": "MU-18: harmonic mean of the 6 per-set metrics x {retain, RA, WF}",
    }

    @classmethod
    def metric_list(cls) -> list[dict[str, Any]]:
        tofu_metric_list.register()
        return tofu_metric_list.metric_list(cls.scenario)

    def documents(self) -> list[dict[str, Any]]:
        self.holdout = holdout_for(self.options)  # resolved once: the rows and the record
        return eval_docs(self.options, self.holdout)

    def load_reference(self, path: str) -> ScoredReference:
        return load_reference(path)

    def _data_source(self) -> str:
        source = data.resolve_data_dir(self.options.data_dir)
        return str(source) if source else f"hub:{data.TOFU_HUB_REPO}"

    def _holdout_provenance(self) -> dict[str, Any]:
        return {
            "source": self.holdout.source,
            "rows": len(self.holdout.docs),
            **({"reason": self.holdout.reason} if self.holdout.reason else {}),
            "mia_min_k_fraction": privacy.MIN_K_FRACTION,
            "privleak_from": privacy.mia_key(privacy.PRIVLEAK_ATTACK),
        }
