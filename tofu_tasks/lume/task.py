"""The ``lume_unlearn`` lm-eval task: LUME's plug-in on the shared task class, scoring as the
SemEval-2025 Task 4 evaluation does.

- Forget and retain rows: the input given to the model as it is (no template), one greedy
  generation of at most ``max_new_tokens`` new tokens (256, the challenge's) with no stop word,
  read as the challenge reads it (decoded, spaces cleaned up); a sentence completion scores the
  ROUGE-L recall of the expected completion, a question exact match (and ROUGE-L recall);
- forget and holdout rows: the log-likelihood of input + output after BOS, the membership
  attacks' scores (the loss attack gives the challenge's MIA score);
- the task aggregate, MIA score and final score (:mod:`harness_ext.metrics.lume`), the final one
  with the MMLU accuracy given as the task option ``mmlu``.

Options: :mod:`tofu_tasks.lume.options`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lm_eval.api.task import ConfigurableTask

from harness_ext.lm_eval_plugin.requests import (
    DocPlan,
    TaskSetupError,
    continuation_token_counts,
    doc_key,
)
from harness_ext.lm_eval_plugin.unlearning_task import NO_ROWS, UnlearningTask
from harness_ext.metrics import lume, privacy
from harness_ext.metrics.aggregate import not_computed
from harness_ext.metrics.references import ScoredReference
from tofu_tasks.lume import metric_list as lume_metric_list
from tofu_tasks.lume.data import REPOSITORY, resolve_data_dir
from tofu_tasks.lume.documents import lume_docs
from tofu_tasks.lume.options import PROMPT_FORMAT, LumeOptions
from tofu_tasks.reference_files import load_reference

HOLDOUT = privacy.HOLDOUT
NO_MMLU = not_computed(
    "the final score averages in the model's MMLU accuracy: give the task option mmlu (a number, "
    "or a results file of lm-eval's mmlu or of wmdp_unlearn)"
)
SCORED_TOKENS = {
    "name": "lume",
    "definition": "membership inference: input + output, every token after BOS; no EOS",
}


class LumeUnlearnTask(UnlearningTask):
    """LUME's forget, retain and holdout rows; see the module docstring."""

    scenario = "lume"
    MEMBERSHIP = True
    options_class = LumeOptions
    METRIC_VARIANTS = {
        "rougeL_recall": "the challenge's regurgitation score: ROUGE-L recall with stemming",
        "exact_match": "the challenge's knowledge score: stripped, lower-cased outputs equal",
        "lume_mia_score": "1 - 2|AUC - 0.5| of the loss attack, forget against holdout rows",
    }

    @classmethod
    def metric_list(cls) -> list[dict[str, Any]]:
        lume_metric_list.register()
        return lume_metric_list.metric_list()

    def documents(self) -> list[dict[str, Any]]:
        return lume_docs(self.options)

    def load_reference(self, path: str) -> ScoredReference:
        return load_reference(path)

    def _data_source(self) -> str:
        folder = resolve_data_dir(self.options.data_dir)
        return str(folder) if folder else f"github:{REPOSITORY}"

    def _holdout_provenance(self) -> dict[str, Any] | None:
        return {"rows": str(self.options.holdout)} if self.options.holdout else None

    def _provenance(self):
        record = super()._provenance()
        record.scenario = "lume"
        record.prompt_format = PROMPT_FORMAT
        record.generation = {"do_sample": False, "max_new_tokens": int(self.options.max_new_tokens),
                             "stop": "eos", "read_as": "decoded, spaces cleaned up, stripped"}  # fmt: skip
        return record

    # ------------------------------------------------------------------ prompts and requests
    def fewshot_context(self, doc: dict, num_fewshot: int = 0, system_instruction=None,
                        apply_chat_template: bool = False, *args, **kwargs) -> str:  # fmt: skip
        """The row's input as it is; holdout rows are scored after BOS alone."""
        if apply_chat_template or system_instruction or num_fewshot:
            raise TaskSetupError(
                "the LUME task gives each input to the model as it is, as the challenge does: "
                "drop --apply_chat_template, --system_instruction and --num_fewshot"
            )
        return "" if doc["set"] == HOLDOUT else doc["question"]

    def build_all_requests(self, **kwargs) -> None:
        self._requests, self._inexact_probes, self._shared_characters = {}, 0, 0
        self._undetermined_argmax = 0
        self._probe_tokens = self._needs_token_requests()
        self._mmlu = self._mmlu_accuracy()
        in_run = self._sets_in_run(kwargs.get("limit"), kwargs.get("samples"))
        # membership inference needs non-members: without holdout rows it reads "N/A", and the
        # forget texts are not scored for it (a model's context need not hold them)
        self._membership = HOLDOUT in in_run
        ConfigurableTask.build_all_requests(self, **kwargs)
        self._placeholder_metrics = self._placeholders(in_run)
        self.provenance.scored_tokens = dict(SCORED_TOKENS)
        self.provenance.token_scores = self._token_scores_provenance()
        docs = [i.doc for i in self._instances if i.idx == 0]
        self._check_retain_reference(
            docs, self._docs_in_run(kwargs.get("limit"), kwargs.get("samples"))
        )

    def construct_requests(self, doc: dict, ctx: str, **kwargs):
        """Forget and retain rows: one generation; holdout rows, and forget rows when the run has
        a holdout: the log-likelihood of input + output after BOS (and one request per token
        without per-token numbers)."""
        kwargs.pop("apply_chat_template", None)
        kwargs.pop("chat_template", None)
        generation, pairs, plan = [], [], None
        if doc["set"] != HOLDOUT:
            budget = int(self.options.max_new_tokens)
            generation = [(ctx, {"until": [], "max_gen_toks": budget, "do_sample": False})]
        if doc["set"] == HOLDOUT or (doc["set"] == "forget" and self._membership):
            (count,) = continuation_token_counts(self.tokenizer, [("", doc["text"])])
            if count < 2:
                raise TaskSetupError(f"too short to score (one token): {doc['text'][:60]!r}")
            plan = DocPlan([count], [None], doc["text"])
            pairs = [("", doc["text"])]
            if self._probe_tokens:
                pairs += self._probe_pairs("", doc["text"], plan, len(pairs), eos="")
            self._requests[doc_key(doc)] = plan
        return self._instances(doc, generation, pairs, plan, **kwargs)

    def _mmlu_accuracy(self) -> float | str:
        """The MMLU accuracy of the task option ``mmlu``: a number, or read from a run."""
        given = self.options.mmlu
        if given is None:
            return NO_MMLU
        try:
            value = float(given)
        except (TypeError, ValueError):
            value = mmlu_from_results(Path(str(given)))
        if not 0.0 <= value <= 1.0:
            raise TaskSetupError(f"mmlu must be an accuracy in [0, 1], got {value}")
        return value

    def _placeholders(self, in_run: set[str]) -> dict[str, Any]:
        """Per-row keys of sets with no document on this rank (see the base class)."""
        on_rank = {i.doc["set"] for i in self._instances}
        out: dict[str, Any] = {}
        for name in lume_metric_list.per_row_metrics():
            split = name.split("_", 1)[0]
            if split not in on_rank:
                out[name] = None if split in in_run else NO_ROWS
        return out

    def _check_retain_reference(self, docs: list[dict], run_docs: list[dict]) -> None:
        """The retain model's membership AUCs on the run's rows (privleak, the ideals)."""
        without = not_computed("no retain reference; set retain_reference")
        self._check_membership_reference(docs, run_docs, without)

    # ------------------------------------------------------------------ results
    def apply_filters(self):
        """No output-quality models: the challenge scores outputs by ROUGE-L and exact match."""
        return ConfigurableTask.apply_filters(self)

    def process_results(self, doc: dict, results: list) -> dict[str, Any]:
        out: dict[str, Any] = {**self._empty_metrics(), **self._placeholder_metrics}
        out["lume_final_score"] = {"mmlu": self._mmlu}
        if doc["set"] != HOLDOUT:
            generation = as_the_challenge_reads(self.tokenizer, str(results[0]))
            score = (
                lume.regurgitation(generation, doc["answer"])
                if doc["kind"] == "sc"
                else lume.exact_match(generation, doc["answer"])
            )
            values = {lume_metric_list.ROUGE: lume.regurgitation(generation, doc["answer"]),
                      lume_metric_list.EXACT: lume.exact_match(generation, doc["answer"])}  # fmt: skip
            for name in lume_metric_list.row_metrics(doc["set"], doc["subtask"], doc["kind"]):
                out[name] = values[
                    lume_metric_list.EXACT
                    if name.endswith("exact_match")
                    else lume_metric_list.ROUGE
                ]
            item = {
                "split": doc["set"],
                "subtask": doc["subtask"],
                "kind": doc["kind"],
                "score": score,
            }
            out["lume_task_aggregate"] = item
            out["lume_final_score"]["task"] = item
            if doc["set"] == "retain" or not self._membership:
                return out
        plan = self._plan_of(doc)
        likelihoods = results[1:] if doc["set"] != HOLDOUT else results
        tokens = self._token_scores(plan, likelihoods)
        nll = -float(likelihoods[0][0]) / plan.counts[0]
        out.update(self._membership_items(doc, nll, doc["text"], tokens))
        loss = out[privacy.mia_key("loss")]
        out["lume_mia_score"] = loss
        out["lume_final_score"]["loss"] = loss
        return out


def as_the_challenge_reads(tokenizer, text: str) -> str:
    """An output as the challenge's evaluation reads it: decoded with the tokenizer's clean-up of
    spaces before punctuation and contractions (``clean_up_tokenization_spaces=True``; lm-eval's
    decoding under transformers 5 leaves it out)."""
    return tokenizer.clean_up_tokenization(text)


def mmlu_from_results(path: Path) -> float:
    """MMLU accuracy from an lm-eval results file or run folder: lm-eval's ``mmlu`` group
    (``acc,none``) or this project's ``wmdp_unlearn`` (``mmlu_acc,none``)."""
    files = [path] if path.is_file() else sorted(path.glob("**/results_*.json"))
    for file in reversed(files):
        try:
            results = json.loads(file.read_text(encoding="utf-8")).get("results", {})
        except (OSError, json.JSONDecodeError):
            continue
        for task, key in (("mmlu", "acc,none"), ("wmdp_unlearn", "mmlu_acc,none")):
            value = (results.get(task) or {}).get(key)
            if isinstance(value, (int, float)):
                return float(value)
    raise TaskSetupError(
        f"mmlu: no MMLU accuracy in {path} (an lm-eval results file or run folder of the mmlu "
        f"task, or of wmdp_unlearn)"
    )
