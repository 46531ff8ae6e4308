"""The task ``wmdp_unlearn``: WMDP's hazardous-knowledge questions as the forget score and MMLU's
as the utility score, asked exactly as lm-eval's own ``wmdp_<domain>`` and ``mmlu_<subject>``
tasks ask them.

The prompt template, the choice letters, the target and each subject's description come from
lm-eval's installed task YAMLs (:func:`tofu_tasks.wmdp.data.lm_eval_task_config`); the requests
(one log-likelihood per choice letter) are lm-eval's multiple-choice requests, and a question is
right when the right letter has the highest log-likelihood, as lm-eval's ``acc``. What this task
adds: one run for every domain and MMLU, the accuracies named as forget and utility scores, their
change from the model before unlearning on the same questions, and the run's provenance.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from lm_eval.api.task import ConfigurableTask

from harness_ext.lm_eval_plugin.requests import TaskSetupError
from harness_ext.lm_eval_plugin.task_provenance import TaskProvenance, write_provenance
from harness_ext.metrics.references import ReferenceError
from harness_ext.provenance import content_hash
from tofu_tasks.wmdp import metric_list as wmdp_metrics
from tofu_tasks.wmdp.data import (
    MMLU_DIR_ENV,
    MMLU_HUB,
    WMDP_DIR_ENV,
    WMDP_HUB,
    lm_eval_task_config,
    lm_eval_version,
    resolve_folder,
)
from tofu_tasks.wmdp.documents import domain_docs, fewshot_examples, wmdp_docs
from tofu_tasks.wmdp.options import MMLU_SET, PROMPT_FORMAT, WmdpOptions
from tofu_tasks.wmdp.reference import BeforeUnlearning, load_before_unlearning

# what lm-eval's WMDP and MMLU tasks share, taken from its wmdp_bio task
ASKED_AS = ("output_type", "doc_to_text", "doc_to_choice", "doc_to_target")
FEWSHOT_RULE = (
    "k other questions of the same WMDP domain with their answer letters, drawn without the "
    "question itself by a generator seeded with its set and row, after the description"
)


class WmdpUnlearnTask(ConfigurableTask):
    """WMDP's domains and MMLU in one run; see the module docstring."""

    def __init__(self, data_dir=None, cache_dir=None, download_mode=None, config=None) -> None:
        config = dict(config or {})
        config.pop("class", None)
        asked = lm_eval_task_config("wmdp_bio")
        config.update({key: asked[key] for key in ASKED_AS})
        config["description"] = "description"  # each document carries its lm-eval task's own
        config["test_split"] = "test"
        wmdp_metrics.register()
        config["metric_list"] = wmdp_metrics.metric_list()
        super().__init__(config=config)  # parses the options and reads the questions (download)
        self.before = self._before_unlearning()
        self.provenance = self._provenance()

    def download(self, dataset_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """lm-eval asks for the data once the config is built: the options are parsed here,
        once, and the questions read from them."""
        import datasets

        self.options = WmdpOptions.from_metadata(dict(self.config.metadata or {}))
        self.dataset = datasets.DatasetDict(
            {self.config.test_split: datasets.Dataset.from_list(wmdp_docs(self.options))}
        )
        # the in-context examples of the few-shot attack: every question of the domain
        self._pools = {}
        if self.options.fewshot:
            self._pools = {f"wmdp_{d}": domain_docs(d, self.options.data_dir)
                           for d in self.options.domain_list()}  # fmt: skip

    def _before_unlearning(self) -> BeforeUnlearning | None:
        path = self.options.pre_unlearning_reference
        if not path:
            return None
        try:
            before = load_before_unlearning(path)
            before.check_covers(list(self.eval_docs))
        except ReferenceError as err:
            raise TaskSetupError(f"pre_unlearning_reference: {err}") from err
        return before

    def _provenance(self) -> TaskProvenance:
        docs = list(self.eval_docs)
        sets: dict[str, int] = {}
        for doc in docs:
            sets[doc["set"]] = sets.get(doc["set"], 0) + 1
        wmdp = resolve_folder(self.options.data_dir, WMDP_DIR_ENV, "WMDP")
        mmlu = resolve_folder(self.options.mmlu_data_dir, MMLU_DIR_ENV, "MMLU")
        return TaskProvenance(
            scenario="wmdp",
            options=asdict(self.options),
            data_source={
                "wmdp": str(wmdp) if wmdp else f"hub:{WMDP_HUB}",
                "mmlu": str(mmlu) if mmlu else f"hub:{MMLU_HUB}",
            },  # fmt: skip
            data_sha256=content_hash(docs),
            rows_per_set=sets,
            prompt_format=PROMPT_FORMAT,
            generation={
                "asked_as": f"lm-eval {lm_eval_version()} wmdp_<domain> / mmlu_<subject>",
                "scored": "log-likelihood of each choice letter; right when highest",
            },  # fmt: skip
            metric_variants={
                "acc": "lm-eval's multiple-choice acc (argmax of the letters' log-likelihoods)"
            },  # fmt: skip
            pre_unlearning_reference=self.before.describe() if self.before else None,
        )

    def dump_config(self) -> dict:
        """lm-eval writes the task's config into the results: the run's record goes with it."""
        write_provenance(self.config.metadata, self.provenance)
        return super().dump_config()

    def fewshot_context(self, doc: dict, num_fewshot: int = 0, system_instruction=None,
                        apply_chat_template: bool = False, *args, **kwargs):  # fmt: skip
        """lm-eval's prompt; with the task option ``fewshot``, a WMDP question comes after k
        examples of its domain (description, then each example as lm-eval writes one)."""
        if num_fewshot:
            raise TaskSetupError(
                "wmdp_unlearn asks zero-shot, as lm-eval's wmdp and mmlu tasks do; for in-context "
                "examples give the task option fewshot (WMDP questions only) instead of "
                "--num_fewshot"
            )
        prompt = super().fewshot_context(
            doc, 0, system_instruction, apply_chat_template, *args, **kwargs
        )
        if not self.options.fewshot or doc["set"] == MMLU_SET:
            return prompt
        if apply_chat_template or system_instruction:
            raise TaskSetupError(
                "the task option fewshot asks in lm-eval's plain format: drop "
                "--apply_chat_template and --system_instruction"
            )
        description = doc.get("description") or ""
        shown = "".join(
            f"{self.doc_to_text(example)}{self.config.target_delimiter}"
            f"{self.doc_to_choice(example)[example['answer']]}{self.config.fewshot_delimiter}"
            for example in fewshot_examples(doc, self._pools[doc["set"]], self.options.fewshot)
        )
        return description + shown + prompt.removeprefix(description)

    def process_results(self, doc: dict, results: list) -> dict[str, Any]:
        import numpy as np

        likelihoods = [loglikelihood for loglikelihood, _ in results]
        accuracy = float(int(np.argmax(likelihoods)) == int(doc["answer"]))
        before = self.before.accuracy(doc) if self.before else None
        change = {"acc": accuracy, "before": before}
        if doc["set"] == MMLU_SET:
            return {wmdp_metrics.UTILITY_ACC: accuracy,
                    wmdp_metrics.UTILITY_ACC + wmdp_metrics.CHANGE_SUFFIX: change}  # fmt: skip
        return {
            wmdp_metrics.set_metric(doc["set"]): accuracy,
            wmdp_metrics.FORGET_ACC: accuracy,
            wmdp_metrics.FORGET_ACC + wmdp_metrics.CHANGE_SUFFIX: change,
        }
