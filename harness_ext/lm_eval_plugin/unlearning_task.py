"""The lm-eval task class every benchmark's unlearning task extends: the machinery they share.

A benchmark is a plug-in (its data loader, eval sets, task YAMLs and a thin subclass of
:class:`UnlearningTask`); this class does the rest the same way for all of them. Each document
carries its set and emits one greedy generation plus one log-likelihood request per scored
answer (the ground truth, and a benchmark's paraphrased and perturbed answers); generations get
the token budget of TOFU's rule (prompt + generation <= ``generation_max_length``), cut per row;
answers are scored on exactly the tokens TOFU scores (:mod:`scored_tokens`); the output-quality
scores that need auxiliary models are computed for all generations in one batch; the retain
model's and the pre-unlearning model's references are checked against the run (prompt format,
scored tokens, rows) before the model runs; corpus-level metrics are aggregations over all
documents of the run.

Membership inference and memorisation (:mod:`harness_ext.metrics.privacy`): each forget and
holdout row gets LOSS, ZLib, Min-K% and Min-K%++ scores (and the reference attack against the
retain reference's own NLLs); their AUCs, ``privleak`` against the retain reference's Min-K% AUC,
and the forget set's extraction strength and exact memorisation are reported, with
open-unlearning's token conventions (LOSS and ZLib over the scored tokens with EOS, the others
without it). The token-level ones come from the per-token numbers of the ``hf-unlearn`` backend
(the default of ``lm-unlearn score``), or, with any other backend, from one log-likelihood
request per scored token (``token_scores``). Min-K%++ also needs the model's whole next-token
distribution, which only ``hf-unlearn`` returns; with ``hf`` and ``vllm`` it reads "N/A".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.task import ConfigurableTask

from harness_ext.lm_eval_plugin import registry as lm_eval_registry
from harness_ext.lm_eval_plugin.current_model import gives_token_scores
from harness_ext.lm_eval_plugin.membership import membership_items
from harness_ext.lm_eval_plugin.reference_checks import check_prompt_format, check_scored_tokens
from harness_ext.lm_eval_plugin.requests import (
    DocKey,
    DocPlan,
    ProbeResult,
    TaskSetupError,
    continuation_token_counts,
    doc_key,
    load_model_tokenizer,
)
from harness_ext.lm_eval_plugin.scored_tokens import (
    eos_text,
    scored_text,
    tofu_span,
    token_probes,
)
from harness_ext.lm_eval_plugin.task_options import ScoringOptions
from harness_ext.lm_eval_plugin.task_provenance import TaskProvenance, write_provenance
from harness_ext.lm_eval_plugin.token_scores import TokenScores, memorization, read_token_scores
from harness_ext.metrics import privacy
from harness_ext.metrics.aggregate import (
    FORGET_EFFICACY_METRICS,
    SampleScore,
    align_reference,
    not_computed,
)
from harness_ext.metrics.eval_set import (
    CLOSER_LOOK_SET_METRICS,
    FORGET_SET,
    TOFU_SET_METRICS,
    EvalSet,
)
from harness_ext.metrics.ideals import RETAIN, ideal_of
from harness_ext.metrics.output_quality import GenerationRecord, OutputScorer
from harness_ext.metrics.privacy import HOLDOUT
from harness_ext.metrics.references import ScoredReference
from harness_ext.metrics.retain_values import RetainValueError, retain_values
from harness_ext.metrics.tofu import mean_nll, rouge_l_recall
from harness_ext.prompts import PromptFormat, choose_prompt_format, resolve_prompt_format
from harness_ext.provenance import content_hash

logger = logging.getLogger("lm-unlearn")

PRE_UNLEARNING_HOW_TO = (
    "Score the model before unlearning once with `lm-unlearn reference --model ORIGINAL "
    "--output ref.json` (same task, rows and prompt format) and pass "
    '--metadata \'{"pre_unlearning_reference": "ref.json"}\'.'
)
FQ_HOW_TO = (
    "Forget quality needs the retain model's forget-set truth ratios: score a retain model "
    "(never trained on the forget set) with this task and --log_samples, then pass its "
    'results or samples file with --metadata \'{"retain_reference": "PATH"}\' '
    "(a legacy TOFU log directory works too)."
)


NO_ROWS = not_computed("no rows")


class UnlearningTask(ConfigurableTask):
    """The task class every benchmark's task extends; see the module docstring."""

    scenario = "unlearning"  # the benchmark's name in results and references
    MEMBERSHIP = True  # membership inference and memorisation of the forget rows
    EVAL_SETS: tuple[EvalSet, ...] = ()
    options_class: type[ScoringOptions] = ScoringOptions

    # ------------------------------------------------------------------ the plug-in's part
    @classmethod
    def metric_list(cls) -> list[dict[str, Any]]:
        """lm-eval's metric list of the task (registering its aggregations)."""
        raise NotImplementedError

    def documents(self) -> list[dict[str, Any]]:
        """The checked documents of the run (``self.options`` is parsed): one per row, each with
        its ``set`` and ``row``, sets interleaved (lm-eval's ``--limit`` keeps some of each)."""
        raise NotImplementedError

    def load_reference(self, path: str) -> ScoredReference:
        """A reference (a scoring run, a results or samples file, a reference file)."""
        raise NotImplementedError

    def _data_source(self) -> str | dict[str, str]:
        raise NotImplementedError

    def _holdout_provenance(self) -> dict[str, Any] | None:
        """The non-members of membership inference (None: the benchmark has none)."""
        return None

    # ------------------------------------------------------------------ setting up
    def __init__(self, data_dir=None, cache_dir=None, download_mode=None, config=None) -> None:
        config = dict(config or {})
        config.pop("class", None)
        config["metric_list"] = self.metric_list()
        super().__init__(config=config)  # parses the options and reads the data (download)
        self.retain_reference = self._optional_reference(self.options.retain_reference)
        self.pre_unlearning = self._optional_reference(self.options.pre_unlearning_reference)
        self.prompt_format: PromptFormat | None = None
        self._tokenizer = None
        self._requests: dict[DocKey, DocPlan] = {}
        self._inexact = 0
        self._inexact_probes = 0
        self._shared_characters = 0
        self._undetermined_argmax = 0
        self._probe_tokens = False
        self._budgets: dict[DocKey, int] = {}
        self._reference_ratios: dict[DocKey, float] = {}
        self._pre_unlearning_outputs: dict[DocKey, str] = {}
        self._scored: dict[DocKey, tuple[str, dict[str, float | str]]] = {}
        self._scorer: OutputScorer | None = None
        self._placeholder_metrics: dict[str, Any] = {}
        self._retain_auc: float | str | None = None
        self._reference_nlls: dict[DocKey, tuple[str, float]] = {}
        self.provenance = self._provenance()

    def download(self, dataset_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """lm-eval builds the task's config, then asks for its data: the options are parsed
        here, once, and the documents read from them."""
        import datasets

        self.options = self.options_class.from_metadata(dict(self.config.metadata or {}))
        self.dataset = datasets.DatasetDict(
            {self.config.test_split: datasets.Dataset.from_list(self.documents())}
        )

    def eval_set(self, doc: dict) -> EvalSet:
        """The eval set of a document (its ``set``)."""
        for eval_set in self.EVAL_SETS:
            if eval_set.name == doc["set"]:
                return eval_set
        raise TaskSetupError(f"{self.task_name} has no eval set {doc['set']!r}")

    def _optional_reference(self, path: str | None) -> ScoredReference | None:
        return self.load_reference(path) if path else None

    # ------------------------------------------------------------------ provenance
    METRIC_VARIANTS: dict[str, str] = {}  # how the benchmark defines its corpus metrics

    def _provenance(self) -> TaskProvenance:
        docs = list(self.eval_docs)
        sets: dict[str, int] = {}
        for doc in docs:
            sets[doc["set"]] = sets.get(doc["set"], 0) + 1
        return TaskProvenance(
            options=asdict(self.options),
            data_source=self._data_source(),
            data_sha256=content_hash(docs),
            rows_per_set=sets,
            metric_variants=dict(self.METRIC_VARIANTS),
            forget_quality_reference=_describe(self.retain_reference),
            pre_unlearning_reference=_describe(self.pre_unlearning),
            holdout=self._holdout_provenance(),
        )

    def dump_config(self) -> dict:
        """lm-eval writes the task's config into the results: the run's record goes with it."""
        write_provenance(self.config.metadata, self.provenance)
        return super().dump_config()

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_model_tokenizer(self.config.metadata)
        return self._tokenizer

    # ------------------------------------------------------------------ prompts
    def fewshot_context(
        self,
        doc: dict,
        num_fewshot: int = 0,
        system_instruction: str | None = None,
        apply_chat_template: bool = False,
        fewshot_as_multiturn: bool = False,
        chat_template: Callable[..., str] | None = None,
        gen_prefix: str | None = None,
    ) -> str:
        fmt = self._format(apply_chat_template)
        if fmt.name == "chat":
            if chat_template is None:
                raise TaskSetupError("--apply_chat_template was set but no chat template exists")
            messages = [{"role": "system", "content": system_instruction}] * bool(
                system_instruction
            ) + [{"role": "user", "content": doc["question"]}]
            return chat_template(messages)
        prompt = fmt.prompt.format(question=doc["question"])
        return f"{system_instruction}\n\n{prompt}" if system_instruction else prompt

    def _format(self, apply_chat_template: bool) -> PromptFormat:
        if self.prompt_format is None:
            metadata = self.config.metadata
            template = self.options.prompt_template
            requested, asked_by = self.options.prompt_format, "chosen with prompt_format"
            if apply_chat_template and not template and requested in (None, "", "chat"):
                # lm_eval's --apply_chat_template asks for the chat format by name
                requested, asked_by = "chat", "--apply_chat_template"
            requested, why = choose_prompt_format(
                requested,
                metadata.get("peft") or metadata.get("pretrained"),
                chat_template=False,  # lm_eval asks in the chat template only when told
                template=template,
                why_plain="the default without a chat template",
                why_requested=asked_by,
            )
            logger.info("%s: prompt format %s: %s", self.task_name, requested, why)
            requested = None if requested == "template" else requested
            try:
                self.prompt_format = resolve_prompt_format(requested, apply_chat_template, template)
            except ValueError as err:
                raise TaskSetupError(str(err)) from err
            record = self.provenance
            record.prompt_format = self.prompt_format.name
            record.prompt_format_reason = why
            if self.prompt_format.name == "template":
                record.prompt_template = {
                    "prompt": self.prompt_format.prompt,
                    "answer": self.prompt_format.answer,
                }
        return self.prompt_format

    def scored_answers(self, doc: dict) -> list[str]:
        """Answers scored by log-likelihood, in request order after the generation."""
        if doc["set"] == HOLDOUT or not self.options.wants_truth_ratio:
            return [doc["answer"]]
        eval_set = self.eval_set(doc)
        base = [] if eval_set.base_answer_field == "answer" else [doc["base_answer"]]
        return [doc["answer"], *base, *doc["perturbed_answers"]]

    # ------------------------------------------------------------------ requests
    def _docs_in_run(self, limit: int | None, samples: list[int] | None) -> list[dict]:
        """The documents of this run, over all ranks (``--limit`` can leave some out)."""
        docs = list(self.eval_docs)
        if samples is not None:
            return [docs[i] for i in samples]
        return docs[: int(limit)] if limit is not None else docs

    def _sets_in_run(self, limit: int | None, samples: list[int] | None) -> set[str]:
        """Sets with documents in this run, over all ranks."""
        return {doc["set"] for doc in self._docs_in_run(limit, samples)}

    def _placeholders(self, in_run: set[str]) -> dict[str, Any]:
        """Metric keys this rank's documents would not report, so that every document reports
        every key of the task: lm-eval gathers the ranks' metrics by the keys of rank 0. A set
        with no rows in the run reads "N/A (no rows)"; a set whose rows are all on other ranks
        gives ``None``, which the aggregations skip."""
        on_rank = {i.doc["set"] for i in self._instances}
        out: dict[str, Any] = {}
        for eval_set in self.EVAL_SETS:
            if eval_set.name in on_rank:
                continue
            value = None if eval_set.name in in_run else NO_ROWS
            out.update({f"{eval_set.name}_{m}": value for m in CLOSER_LOOK_SET_METRICS})
            if eval_set.name == FORGET_SET:
                out["forget_truth_ratio_closer_look"] = value
                out["forget_efficacy"] = out["forget_quality"] = None
                out.update(dict.fromkeys(lm_eval_registry.MEMORIZATION_METRICS, value))
        return out

    def _empty_metrics(self) -> dict[str, Any]:
        """Every key of the task as None (skipped by the aggregations): what a document
        reports for the metrics that are not about its set."""
        names = (entry["metric"] for entry in self.config.metric_list)
        wanted = self.options.wants_bertscore
        return {name: None for name in names if wanted or not name.endswith("_bertscore_f1")}

    def build_all_requests(self, **kwargs) -> None:
        self.prompt_format = None
        self._format(bool(kwargs.get("apply_chat_template", False)))
        in_run = self._sets_in_run(kwargs.get("limit"), kwargs.get("samples"))
        self._requests, self._inexact, self._inexact_probes = {}, 0, 0
        self._shared_characters = self._undetermined_argmax = 0
        self._probe_tokens = self.MEMBERSHIP and self._needs_token_requests()
        super().build_all_requests(**kwargs)
        self._placeholder_metrics = self._placeholders(in_run)
        self._set_generation_budgets()
        self._record_scored_tokens()
        docs = [i.doc for i in self._instances if i.idx == 0]
        self._check_retain_reference(
            docs, self._docs_in_run(kwargs.get("limit"), kwargs.get("samples"))
        )
        self._check_pre_unlearning_reference(docs)
        # Load the auxiliary models now, so a bad model name fails before the expensive part.
        self._scorer = self._output_scorer()

    def _needs_token_requests(self) -> bool:
        """One request per scored token unless the backend returns per-token numbers itself
        (``token_scores: auto`` and ``hf-unlearn``), or the user asked for none."""
        option = self.options.token_scores
        return option == "requests" or (option == "auto" and not gives_token_scores())

    def _set_generation_budgets(self) -> None:
        """TOFU's rule: prompt + generation <= generation_max_length tokens, per row.

        All rows get the same max_gen_toks (the largest budget), so the backend can batch them;
        each generation is then cut to its own row's budget. Greedy decoding makes the cut
        generation equal to a generation stopped at that budget.
        """
        generations = [i for i in self._instances if i.request_type == "generate_until"]
        user_kwargs = self.config.generation_kwargs or {}
        info = self.provenance.generation
        if "max_gen_toks" in user_kwargs:
            self._budgets = {}
            info["max_gen_toks"] = user_kwargs["max_gen_toks"]
            return
        limit = int(self.options.generation_max_length)
        prompts = [i.arguments[0] for i in generations]
        lengths = [len(ids) for ids in self.tokenizer(prompts)["input_ids"]]
        self._budgets = {
            doc_key(i.doc): max(1, limit - n) for i, n in zip(generations, lengths, strict=True)
        }
        uniform = max(self._budgets.values(), default=1)
        for instance in generations:
            instance.arguments[1]["max_gen_toks"] = uniform
        info["prompt_plus_generation_max_tokens"] = limit

    def _check_retain_reference(self, docs: list[dict], run_docs: list[dict]) -> None:
        """Forget quality's reference ratios for this rank's documents, and the retain model's
        own values on all the run's rows (the ideal of the metrics that have it)."""
        forget = [d for d in docs if d["set"] == FORGET_SET]
        self._retain_auc, self._reference_nlls = None, {}
        if self.retain_reference is None:
            if forget and self.options.wants_truth_ratio:  # without ratios no FQ is asked
                logger.warning(
                    "%s: forget_quality will NOT be computed. %s", self.task_name, FQ_HOW_TO
                )
            self._record_ideals({})
            return
        reference = self.retain_reference
        check_prompt_format(reference, self.prompt_format)
        check_scored_tokens(reference, self.options.scored_tokens)
        ratios = align_reference(
            [(d["row"], d["question"]) for d in forget], reference.forget_ratios, reference.source
        )
        self._reference_ratios = {
            doc_key(d): ratio for d, ratio in zip(forget, ratios, strict=True)
        }
        try:
            values = retain_values(reference, run_docs)
        except RetainValueError as err:
            raise TaskSetupError(str(err)) from err
        self._record_ideals(values)
        self._use_reference_membership(reference, docs, values)

    def _check_membership_reference(
        self, docs: list[dict], run_docs: list[dict], without: float | str
    ) -> None:
        """For a benchmark whose rows are texts, not answered questions (MUSE, LUME): the retain
        model's membership AUCs on the run's rows (privleak's reference and the ideals), or,
        without a retain reference, ``without`` (a fixed reference AUC, or why there is none)."""
        self._retain_auc, self._reference_nlls = None, {}
        if self.retain_reference is None:
            self._retain_auc = without
            self._record_ideals({})
            return
        try:
            values = retain_values(self.retain_reference, run_docs, answers=False)
        except RetainValueError as err:
            raise TaskSetupError(str(err)) from err
        self._record_ideals(values)
        self._use_reference_membership(self.retain_reference, docs, values)

    def _record_ideals(self, values: dict[str, float | str]) -> None:
        """The results say which value is best where lm-eval's boolean cannot (privleak, the
        AUCs, TOFU's forget truth ratio: the retain model's), and the retain model's values."""
        names = [entry["metric"] for entry in self.config.metric_list]
        self.provenance.metric_ideals = {
            name: ideal_of(name).describe(
                values.get(name) if _is_number(values.get(name)) else None
            )
            for name in names
            if ideal_of(name).kind == RETAIN
        }
        self.provenance.retain_values = {k: v for k, v in values.items() if _is_number(v)} or None

    def _use_reference_membership(
        self, reference: ScoredReference, docs: list[dict], values: dict[str, float | str]
    ) -> None:
        """The retain model's own membership AUC on the run's rows (privleak) and per-row NLLs
        (reference attack). A holdout chosen by the user needs a reference scored with one."""
        self._reference_nlls = reference.answer_nlls
        same_rows = values.get(privacy.mia_key(privacy.PRIVLEAK_ATTACK))
        if _is_number(same_rows):
            self._retain_auc = float(same_rows)
            return
        # references written before per-row scores were kept: their whole run's AUC
        per_row = any(row.mia_scores for row in reference.rows)
        retain_auc = None if per_row else reference.mia_auc(privacy.PRIVLEAK_ATTACK)
        if _is_number(retain_auc):
            self._retain_auc = float(retain_auc)
            return
        why = (same_rows if per_row else retain_auc) or "it was scored without membership inference"
        has_holdout = any(d["set"] == HOLDOUT for d in docs)
        if has_holdout and self.options.holdout is not None:
            raise TaskSetupError(
                f"the retain reference {reference.source} carries no membership-inference scores "
                f"for this run's rows ({why}), so privleak cannot be computed against it: score "
                f"the retain model again with this version and the same holdout "
                f"({self.options.holdout!r}), or drop holdout"
            )
        self._retain_auc = not_computed(f"the retain reference has no Min-K% AUC: {why}")

    def _check_pre_unlearning_reference(self, docs: list[dict]) -> None:
        needing = [
            d
            for d in docs
            if d["set"] != HOLDOUT and self.eval_set(d).needs_pre_unlearning_output()
        ]
        self._pre_unlearning_outputs = {}
        if self.pre_unlearning is None:
            if needing:
                logger.warning(
                    "%s: cosine similarity and entailment on %s will NOT be computed: they "
                    "compare with the model's outputs before unlearning. %s",
                    self.task_name,
                    ", ".join(sorted({d["set"] for d in needing})),
                    PRE_UNLEARNING_HOW_TO,
                )
            return
        check_prompt_format(self.pre_unlearning, self.prompt_format)
        for set_name in sorted({d["set"] for d in needing}):
            rows = [d for d in needing if d["set"] == set_name]
            outputs = align_reference(
                [(d["row"], d["question"]) for d in rows],
                self.pre_unlearning.generations(set_name),
                f"the pre-unlearning reference {self.pre_unlearning.source} ({set_name})",
            )
            for doc, output in zip(rows, outputs, strict=True):
                self._pre_unlearning_outputs[doc_key(doc)] = output

    def construct_requests(self, doc: dict, ctx: str, **kwargs) -> list[Instance]:
        """One greedy generation, one log-likelihood per answer, (when the prompt ends in
        whitespace) one per distinct prompt boundary, subtracted so that exactly TOFU's tokens
        count (see :mod:`harness_ext.lm_eval_plugin.scored_tokens`), and, on forget and holdout rows when the
        backend gives no per-token numbers, one per scored token of the ground truth."""
        apply_chat_template = kwargs.pop("apply_chat_template", False)
        kwargs.pop("chat_template", None)
        fmt = self._format(apply_chat_template)
        answers = [fmt.answer.format(answer=answer) for answer in self.scored_answers(doc)]
        pairs, plan = self._scored_pairs(ctx, answers)
        if self._probe_tokens and doc["set"] in (FORGET_SET, HOLDOUT):
            pairs += self._probe_pairs(ctx, answers[0], plan, len(pairs))
        self._requests[doc_key(doc)] = plan
        # holdout rows are only scored, never answered
        generation = [] if doc["set"] == HOLDOUT else [(ctx, self._generation_kwargs())]
        return self._instances(doc, generation, pairs, plan, **kwargs)

    def _instances(
        self,
        doc: dict,
        generation: list[tuple[str, dict]],
        pairs: list[tuple[str, str]],
        plan: DocPlan | None,
        **kwargs,
    ) -> list[Instance]:
        """A document's requests: its generation (at most one) first, then its log-likelihood
        pairs; the per-token probes of ``plan`` are marked so that a backend with per-token
        numbers of its own (hf-unlearn) need not answer them."""
        instances = [
            Instance(
                request_type="generate_until" if generation and index == 0 else "loglikelihood",
                doc=doc,
                arguments=arguments,
                idx=index,
                **kwargs,
            )
            for index, arguments in enumerate([*generation, *pairs])
        ]
        if plan is not None and self.options.token_scores == "auto":
            for index in plan.probe_indexes():
                instances[len(generation) + index].token_probe = True
        return instances

    def _scored_pairs(self, ctx: str, answers: list[str]) -> tuple[list[tuple[str, str]], DocPlan]:
        """(context, continuation) pairs: the answers, then the distinct boundaries; and the
        plan that reads their results back."""
        if self.options.scored_tokens == "answer-only":
            pairs = [(ctx, answer) for answer in answers]
            counts = continuation_token_counts(self.tokenizer, pairs)
            return pairs, DocPlan(counts, [None] * len(answers), answers[0].strip())
        eos = self._eos_text()
        spans = [tofu_span(self.tokenizer, ctx, answer, eos, self._add_bos) for answer in answers]
        self._inexact += sum(not span.exact for span in spans)
        boundaries = list(dict.fromkeys(s.boundary for s in spans if s.boundary is not None))
        pairs = [(ctx, answer + eos) for answer in answers]
        pairs += [(ctx.rstrip(), boundary) for boundary in boundaries]
        boundary_of = [
            None if s.boundary is None else len(answers) + boundaries.index(s.boundary)
            for s in spans
        ]
        plan = DocPlan([s.count for s in spans], boundary_of, scored_text(self.tokenizer, spans[0]))
        plan.span = spans[0]
        return pairs, plan

    def _probe_pairs(
        self, ctx: str, answer: str, plan: DocPlan, first_index: int, eos: str | None = None
    ) -> list[tuple[str, str]]:
        """One pair per scored token of the ground truth but its last (the EOS, when ``eos``
        is None: TOFU's; open-unlearning drops the last scored token of a text too), plus the
        boundaries of contexts that end in whitespace; their indexes go into the plan."""
        eos = self._eos_text() if eos is None else eos
        probes = token_probes(self.tokenizer, ctx, answer, eos, plan.counts[0] - 1, self._add_bos)
        pairs = [(probe.context, probe.token) for probe in probes]
        boundaries = list(
            dict.fromkeys((p.context.rstrip(), p.boundary) for p in probes if p.boundary)
        )
        pairs += boundaries
        plan.probes = [
            ProbeResult(
                first_index + i,
                None if p.boundary is None else first_index + len(probes)
                + boundaries.index((p.context.rstrip(), p.boundary)),
                p.exact,
                p.size,
            )
            for i, p in enumerate(probes)
        ]  # fmt: skip
        self._inexact_probes += sum(not p.exact for p in probes)
        self._shared_characters += sum(p.size for p in probes if p.size > 1)
        return pairs

    @property
    def _add_bos(self) -> bool | None:
        return self.config.metadata.get("add_bos_token")

    def _eos_text(self) -> str:
        try:
            return eos_text(self.tokenizer)
        except ValueError as err:
            raise TaskSetupError(str(err)) from err

    def _record_scored_tokens(self) -> None:
        definition = (
            "tokenize(prompt + answer) after the prompt's positions, plus EOS (TOFU's labels)"
            if self.options.scored_tokens == "tofu"
            else "the answer's tokens as lm-eval splits them, no EOS"
        )
        info = {"name": self.options.scored_tokens, "definition": definition}
        if self._inexact:
            info["inexact_boundaries"] = self._inexact
            logger.warning(
                "%s: for %d answers the tokenizer merges the prompt's trailing whitespace with "
                "the answer differently when the prompt is cut; their scores are close to, not "
                "exactly, TOFU's",
                self.task_name,
                self._inexact,
            )
        self.provenance.scored_tokens = info
        self.provenance.token_scores = self._token_scores_provenance()

    def _token_scores_provenance(self) -> dict[str, Any]:
        """Where the per-token numbers of Min-K%, Min-K%++ and memorisation come from."""
        probes = sum(len(plan.probes or ()) for plan in self._requests.values())
        info: dict[str, Any] = {
            "option": self.options.token_scores,
            "tokens": "the scored tokens without the final EOS (open-unlearning's)"
            if self.options.scored_tokens == "tofu"
            else "the scored tokens",
            "per_token_requests": probes,
        }
        if probes:
            info["used_when"] = (
                "always" if self.options.token_scores == "requests"
                else "when the backend returns no per-token numbers (hf-unlearn does)"
            )  # fmt: skip
        if self._shared_characters:
            info["shared_characters"] = self._shared_characters
            info["shared_characters_note"] = (
                "tokens that are byte pieces of one character: through per-token requests "
                "they share their log-prob evenly"
            )
        if self._inexact_probes:
            info["inexact_requests"] = self._inexact_probes
        return info

    def _generation_kwargs(self) -> dict[str, Any]:
        """Greedy until EOS; the token budget is filled in by _set_generation_budgets."""
        return {"until": [], "do_sample": False, **(self.config.generation_kwargs or {})}

    # ------------------------------------------------------------------ results
    def apply_filters(self):
        """After the model's responses: score every generation's output quality in one batch."""
        filtered = super().apply_filters()
        generations = [i for i in self._instances if i.request_type == "generate_until"]
        texts = [
            self._cut_to_budget(i.doc, next(iter(i.filtered_resps.values()))) for i in generations
        ]
        records = [
            GenerationRecord(
                eval_set=self.eval_set(i.doc),
                generation=text,
                ground_truth=i.doc["answer"],
                rouge_recall=rouge_l_recall(text, i.doc["answer"]),
                pre_unlearning=self._pre_unlearning_outputs.get(doc_key(i.doc)),
            )
            for i, text in zip(generations, texts, strict=True)
        ]
        scores = self._scorer.score(records)
        self._scored = {
            doc_key(i.doc): (text, score)
            for i, text, score in zip(generations, texts, scores, strict=True)
        }
        self.provenance.metric_models = self._scorer.describe()
        return filtered

    def _output_scorer(self) -> OutputScorer:
        options = self.options
        metadata = self.config.metadata
        return OutputScorer.load(
            tokenizer=self.tokenizer,
            embedding_model=options.embedding_model,
            nli_model=options.nli_model,
            device=options.aux_device,
            bertscore=options.wants_bertscore,
            bertscore_model=options.bertscore_model,
            tokenizer_name=str(metadata.get("tokenizer") or metadata.get("pretrained")),
        )

    def _cut_to_budget(self, doc: dict, generation: str) -> str:
        budget = self._budgets.get(doc_key(doc))
        if budget is not None:
            ids = self.tokenizer(generation, add_special_tokens=False)["input_ids"]
            if len(ids) > budget:
                generation = self.tokenizer.decode(ids[:budget], skip_special_tokens=True)
        return generation.strip()

    def process_results(self, doc: dict, results: list) -> dict[str, Any]:
        key = doc_key(doc)
        holdout = doc["set"] == HOLDOUT
        likelihoods = results if holdout else results[1:]
        plan = self._plan_of(doc, ready=holdout or key in self._scored)
        summed = [float(result[0]) for result in likelihoods]
        nlls = [
            mean_nll(summed[i] - (0.0 if b is None else summed[b]), n)
            for i, (n, b) in enumerate(zip(plan.counts, plan.boundary_of, strict=True))
        ]
        out: dict[str, Any] = {**self._empty_metrics(), **self._placeholder_metrics}
        if doc["set"] in (FORGET_SET, HOLDOUT):
            tokens = self._token_scores(plan, likelihoods)
            out.update(self._membership_items(doc, nlls[0], plan.zlib_text, tokens))
        if holdout:
            return out
        out.update(self._set_metrics(doc, nlls, plan.counts))
        if doc["set"] == FORGET_SET:
            out.update(memorization(tokens))
        return out

    def _plan_of(self, doc: dict, ready: bool = True) -> DocPlan:
        """The plan of a document's requests, which this task built (``ready``: and whatever
        else the document's results need was done)."""
        plan = self._requests.get(doc_key(doc))
        if plan is None or not ready:
            raise TaskSetupError(
                f"no request bookkeeping for {doc['set']} row {doc['row']}; requests must be "
                f"built by this task (request caching is not supported)"
            )
        return plan

    def _token_scores(self, plan: DocPlan, likelihoods: list) -> TokenScores | str:
        tokens, undetermined = read_token_scores(
            plan, likelihoods, self.options.token_scores, self.options.scored_tokens == "tofu"
        )
        self._undetermined_argmax += undetermined
        if self._undetermined_argmax:
            self.provenance.token_scores["undetermined_argmax"] = self._undetermined_argmax
        return tokens

    def _set_metrics(self, doc: dict, nlls: list[float], counts: list[int]) -> dict[str, Any]:
        key = doc_key(doc)
        n_base = 0 if self.eval_set(doc).base_answer_field == "answer" or len(nlls) == 1 else 1
        generation, output_scores = self._scored[key]
        sample = SampleScore(
            eval_set=self.eval_set(doc),
            question=doc["question"],
            generation=generation,
            target=doc["answer"],
            answer_nll=nlls[0],
            base_nll=nlls[n_base],
            perturbed_nlls=tuple(nlls[1 + n_base :]),
            output_scores=output_scores,
        )
        values = sample.metrics()
        set_name = doc["set"]
        reported = (*CLOSER_LOOK_SET_METRICS, "bertscore_f1", "truth_ratio_closer_look")
        out: dict[str, Any] = {f"{set_name}_{m}": values[m] for m in reported if m in values}
        out["tofu_model_utility"] = {"set": set_name, **{m: values[m] for m in TOFU_SET_METRICS}}
        # The full per-document record: the generation as scored and every per-sample number.
        out["model_utility"] = {
            "set": set_name,
            "generation": generation,
            **values,
            # per answer (ground truth, paraphrase if any, perturbed): mean NLL and token count
            "scored_answers": {"mean_nll": nlls, "tokens": counts},
        }
        if set_name == FORGET_SET:
            out["forget_efficacy"] = {
                "set": set_name,
                **{m: values[m] for m in FORGET_EFFICACY_METRICS},
            }
            out["forget_quality"] = {
                "question": doc["question"],
                "raw_truth_ratio": values["raw_truth_ratio"],
                "reference_ratio": self._reference_ratios.get(key),
            }
        return out

    def _membership_items(
        self, doc: dict, nll: float, zlib_text: str, tokens: TokenScores | str
    ) -> dict[str, Any]:
        """Per-row membership-inference scores of a forget or holdout row."""
        reference = self._reference_score(doc, nll)
        return membership_items(doc, nll, zlib_text, tokens, reference, self._retain_auc)

    def _reference_score(self, doc: dict, nll: float) -> float | str:
        if self.retain_reference is None:
            return not_computed("no retain reference; set retain_reference")
        found = self._reference_nlls.get(doc_key(doc))
        if found is None or found[0] != doc["question"]:
            return not_computed(
                f"the retain reference has no answer NLL for {doc['set']} row {doc['row']}; "
                f"score it with this version and the same holdout"
            )
        return nll - found[1]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _describe(reference: ScoredReference | None) -> dict[str, Any] | None:
    return reference.describe() if reference else None
