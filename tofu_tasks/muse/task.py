"""The ``muse_news_unlearn`` and ``muse_books_unlearn`` lm-eval tasks: MUSE's plug-in on the shared
task class.

One task scores a corpus's criteria as open-unlearning scores them (the conformance kit pins the
conventions):

- knowledge memorisation (``forget_knowmem``, ``retain_knowmem``: utility preservation): a greedy
  answer of at most 32 new tokens after three in-context examples, cut at MUSE's stop words,
  ROUGE-L F1 with stemming against the answer;
- verbatim memorisation (``forget_verbmem``): a greedy continuation of at most 128 new tokens of a
  forget passage's beginning, ROUGE-L F1 against the passage's continuation; and, teacher-forced on
  ``prompt + " " + continuation``, extraction strength and exact memorisation over the
  continuation's tokens but its last;
- privacy leakage (``forget`` and ``holdout`` texts, each scored after BOS): the shared
  membership-inference attacks (Min-K% and Min-K%++ over the tokens but the last, LOSS and ZLib
  over all) and privleak, against the retain model's Min-K% AUC on the same rows
  (``retain_reference``) or a fixed AUC (``privleak_reference_auc``).

Options: :mod:`tofu_tasks.muse.options`.
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.task import ConfigurableTask

from harness_ext.lm_eval_plugin.requests import (
    DocPlan,
    TaskSetupError,
    continuation_token_counts,
    doc_key,
)
from harness_ext.lm_eval_plugin.token_scores import memorization
from harness_ext.lm_eval_plugin.unlearning_task import NO_ROWS, UnlearningTask
from harness_ext.metrics import privacy
from harness_ext.metrics.aggregate import not_computed
from harness_ext.metrics.muse import (
    KNOWMEM_NEW_TOKENS,
    KNOWMEM_STOP_WORDS,
    VERBMEM_NEW_TOKENS,
    rouge_l_f1,
)
from harness_ext.metrics.references import ScoredReference
from tofu_tasks.muse import metric_list as muse_metric_list
from tofu_tasks.muse.data import hub_id, resolve_data_dir
from tofu_tasks.muse.documents import as_open_unlearning_reads, muse_docs
from tofu_tasks.muse.options import KNOWMEM_SETS, PROMPT_FORMAT, VERBMEM_SET, MuseOptions
from tofu_tasks.reference_files import load_reference

NO_PRIVLEAK_REFERENCE = not_computed(
    "privleak compares with the retain model's Min-K% AUC: score the retain model with this "
    "task and --log_samples and pass retain_reference, or give privleak_reference_auc (0.5 "
    "is open-unlearning's fallback)"
)
GENERATION = {
    "do_sample": False,
    "knowmem": {"max_new_tokens": KNOWMEM_NEW_TOKENS, "stop": list(KNOWMEM_STOP_WORDS)},
    "verbmem": {"max_new_tokens": VERBMEM_NEW_TOKENS, "stop": "eos"},
    "read_as": "decoded, spaces cleaned up as the tokenizer's clean_up_tokenization does, cut "
    "at the first stop word, stripped (open-unlearning's reading)",
}
SCORED_TOKENS = {
    "name": "muse",
    "definition": "verbatim: tokenize(prompt + ' ' + continuation) after the prompt's positions; "
    "privacy texts: every token after BOS; no EOS appended",
}


class MuseUnlearnTask(UnlearningTask):
    """One MUSE corpus's criteria; see the module docstring."""

    scenario = "muse"
    MEMBERSHIP = True
    options_class = MuseOptions
    METRIC_VARIANTS = {
        "rougeL_f1": "MUSE: ROUGE-L F1 with stemming (TOFU's ROUGE is recall)",
        "privleak": "((1 - AUC) - (1 - AUC_ref)) / (1 - AUC_ref) x 100, Min-K% with K = 40 %",
    }

    @classmethod
    def metric_list(cls) -> list[dict[str, Any]]:
        muse_metric_list.register()
        return muse_metric_list.metric_list()

    def documents(self) -> list[dict[str, Any]]:
        return muse_docs(self.options)

    def load_reference(self, path: str) -> ScoredReference:
        return load_reference(path)

    def _data_source(self) -> str:
        folder = resolve_data_dir(self.options.data_dir)
        return str(folder) if folder else f"hub:{hub_id(self.options.corpus)}"

    def _holdout_provenance(self) -> dict[str, Any]:
        return {
            "source": "privleak/holdout",
            "members": self.options.forget_texts,
            "mia_min_k_fraction": privacy.MIN_K_FRACTION,
            "privleak_from": privacy.mia_key(privacy.PRIVLEAK_ATTACK),
            "privleak_reference_auc": self.options.privleak_reference_auc,
        }

    def _provenance(self):
        record = super()._provenance()
        record.scenario = f"muse_{self.options.corpus}"
        record.prompt_format = PROMPT_FORMAT
        record.generation = dict(GENERATION)
        return record

    # ------------------------------------------------------------------ prompts
    def fewshot_context(self, doc: dict, num_fewshot: int = 0, system_instruction=None,
                        apply_chat_template: bool = False, *args, **kwargs) -> str:  # fmt: skip
        """The prompt of a knowledge or verbatim row; privacy texts are scored after BOS alone."""
        if apply_chat_template or system_instruction or num_fewshot:
            raise TaskSetupError(
                "the MUSE tasks prompt in MUSE's own plain format with its own in-context "
                "examples: drop --apply_chat_template, --system_instruction and --num_fewshot"
            )
        return doc.get("prompt") or ""

    # ------------------------------------------------------------------ requests
    def build_all_requests(self, **kwargs) -> None:
        self._requests, self._inexact_probes, self._shared_characters = {}, 0, 0
        self._undetermined_argmax = 0
        self._probe_tokens = self._needs_token_requests()
        ConfigurableTask.build_all_requests(self, **kwargs)
        in_run = self._sets_in_run(kwargs.get("limit"), kwargs.get("samples"))
        self._placeholder_metrics = self._placeholders(in_run)
        self.provenance.scored_tokens = dict(SCORED_TOKENS)
        self.provenance.token_scores = {
            **self._token_scores_provenance(),
            "tokens": "the scored tokens but the last (open-unlearning's)",
        }
        docs = [i.doc for i in self._instances if i.idx == 0]
        self._check_retain_reference(
            docs, self._docs_in_run(kwargs.get("limit"), kwargs.get("samples"))
        )

    def construct_requests(self, doc: dict, ctx: str, **kwargs) -> list[Instance]:
        """Knowledge rows: one generation. Verbatim rows: one generation and the continuation's
        log-likelihood. Privacy texts: the text's log-likelihood after BOS. Scored spans get one
        request per token too when the backend returns no per-token numbers."""
        kwargs.pop("apply_chat_template", None)
        kwargs.pop("chat_template", None)
        set_name = doc["set"]
        generation: list[tuple[str, dict]] = []
        pairs: list[tuple[str, str]] = []
        plan = None
        if set_name in KNOWMEM_SETS:
            generation = [(ctx, _greedy(KNOWMEM_NEW_TOKENS, KNOWMEM_STOP_WORDS))]
        else:
            if set_name == VERBMEM_SET:
                generation = [(ctx, _greedy(VERBMEM_NEW_TOKENS, ()))]
                scored = " " + doc["answer"]  # the passage is prompt + " " + continuation
            else:
                scored = doc["text"]
            pairs, plan = self._scored_text(ctx, scored)
            self._requests[doc_key(doc)] = plan
        return self._instances(doc, generation, pairs, plan, **kwargs)

    def _scored_text(self, ctx: str, text: str) -> tuple[list[tuple[str, str]], DocPlan]:
        """The log-likelihood of ``text`` after ``ctx`` (after BOS alone when ``ctx`` is
        empty, as lm-eval scores an empty context), and its per-token probes."""
        (count,) = continuation_token_counts(self.tokenizer, [(ctx, text)])
        if count < 2:
            raise TaskSetupError(f"too short to score (one token): {text[:60]!r}")
        plan = DocPlan([count], [None], text)
        pairs = [(ctx, text)]
        if self._probe_tokens:
            pairs += self._probe_pairs(ctx, text, plan, len(pairs), eos="")
        return pairs, plan

    def _placeholders(self, in_run: set[str]) -> dict[str, Any]:
        """Per-row metric keys of sets with no document on this rank (see the base class)."""
        on_rank = {i.doc["set"] for i in self._instances}
        out: dict[str, Any] = {}
        for set_name, names in muse_metric_list.SET_METRICS.items():
            if set_name not in on_rank:
                out.update(dict.fromkeys(names, None if set_name in in_run else NO_ROWS))
        return out

    def _check_retain_reference(self, docs: list[dict], run_docs: list[dict]) -> None:
        """The retain model's AUCs on the run's rows, or the fixed reference AUC, or why
        privleak is not computed."""
        fixed = self.options.privleak_reference_auc
        without = NO_PRIVLEAK_REFERENCE if fixed is None else float(fixed)
        self._check_membership_reference(docs, run_docs, without)

    # ------------------------------------------------------------------ results
    def apply_filters(self):
        """No output-quality models: MUSE scores generations by ROUGE-L alone."""
        return ConfigurableTask.apply_filters(self)

    def process_results(self, doc: dict, results: list) -> dict[str, Any]:
        set_name = doc["set"]
        out: dict[str, Any] = {**self._empty_metrics(), **self._placeholder_metrics}
        if set_name in KNOWMEM_SETS or set_name == VERBMEM_SET:
            stops = KNOWMEM_STOP_WORDS if set_name in KNOWMEM_SETS else ()
            generation = as_open_unlearning_reads(self.tokenizer, str(results[0]), stops)
            reference = as_open_unlearning_reads(self.tokenizer, doc["answer"])
            out[f"{set_name}_{muse_metric_list.ROUGE_METRIC}"] = rouge_l_f1(generation, reference)
            if set_name in KNOWMEM_SETS:
                return out
        plan = self._plan_of(doc)
        likelihoods = results[1:] if set_name == VERBMEM_SET else results
        tokens = self._token_scores(plan, likelihoods)
        if set_name == VERBMEM_SET:
            out.update(memorization(tokens))
            return out
        nll = -float(likelihoods[0][0]) / plan.counts[0]
        out.update(self._membership_items(doc, nll, doc["text"], tokens))
        return out


def _greedy(max_new_tokens: int, stop_words: tuple[str, ...]) -> dict[str, Any]:
    return {"until": list(stop_words), "max_gen_toks": max_new_tokens, "do_sample": False}
