"""The options of lm-unlearn's commands other than the training ones, declared once as
dataclasses and parsed by ``HfArgumentParser``, as the training commands' TrainingArguments
are: :class:`RunArguments` is how lm-eval runs a model (``score``, ``audit`` and ``reference``),
:class:`ScoringArguments` what ``score`` and ``audit`` add to score a model, and each command's
own dataclass the rest. Those of a workflow turn into its settings object."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness_ext.lm_eval_plugin import DEFAULT_BACKEND
from harness_ext.workflows.audit_settings import (
    ATTACKS,
    FEWSHOT_EXAMPLES,
    RELEARN_SPLITS,
    AuditSettings,
    RelearnSettings,
)
from harness_ext.workflows.demo import DemoSettings
from harness_ext.workflows.demo_lume import LumeDemoSettings
from harness_ext.workflows.score_inputs import ScoreSettings
from tofu_tasks.scored_benchmarks import FORGET_CHOICES

SCORED = FORGET_CHOICES  # TOFU's forget splits, MUSE's corpora, WMDP


def _help(text: str, **more: Any) -> dict[str, Any]:
    return {"help": text, **more}


@dataclass
class RunArguments:
    """How lm-eval runs a model: the backend and its arguments, the prompt, the task options."""

    help_group = "running the model"

    backend: str = field(
        default=DEFAULT_BACKEND,
        metadata=_help(f"lm-eval backend: {DEFAULT_BACKEND} (default), hf, vllm, ..."),
    )
    model_args: str = field(
        default="", metadata=_help("more lm-eval model arguments, e.g. dtype=bfloat16,peft=DIR")
    )
    prompt_format: str | None = field(
        default=None,
        metadata=_help(
            "chat, plain, llama2, phi or lume (default: the rule of docs/scoring.md, said and recorded)"
        ),
    )
    metadata: str | None = field(
        default=None, metadata=_help("task options as JSON (docs/scoring.md lists them)")
    )
    batch_size: str = field(default="auto", metadata=_help("lm-eval's batch size"))
    device: str | None = field(
        default=None, metadata=_help("cuda, cuda:0 or cpu (default: cuda if available)")
    )


@dataclass
class ScoringArguments(RunArguments):
    """How a model is scored: the task, the model's name, the references."""

    help_group = "scoring"

    forget: str = field(
        default="forget01",
        # --split: its name in commands recorded by earlier versions (manifests' rerun lines)
        metadata=_help(
            f"the TOFU forget split, MUSE corpus or WMDP scored: {', '.join(SCORED)}",
            hidden_aliases=["--split"],
        ),
    )
    base: str | None = field(
        default=None, metadata=_help("base model of a PEFT adapter (default: its adapter_config)")
    )
    label: str | None = field(
        default=None,
        metadata=_help(
            "the model's name in tables (default: the method from its training card, else its "
            "folder or hub name); shown as 'LABEL · BASE MODEL · SPLIT'"
        ),
    )
    reference: str | None = field(
        default=None, metadata=_help("the retain model's reference: forget quality, privleak")
    )
    pre_unlearning_reference: str | None = field(
        default=None, metadata=_help("the model's outputs before unlearning")
    )
    max_rows_per_set: int | None = field(
        default=None, metadata=_help("score at most N rows of each set")
    )
    force: bool = field(default=False, metadata=_help("score again even if already scored"))

    def __post_init__(self) -> None:
        if self.forget not in SCORED:
            raise ValueError(f"--forget must be one of {', '.join(SCORED)}, got {self.forget!r}")

    def settings(self, runs: Path) -> ScoreSettings:
        """The scoring settings, the runs going to ``runs``."""
        from tofu_tasks.options import given_task_options

        metadata = given_task_options(self.metadata, self.max_rows_per_set)
        return ScoreSettings(
            split=self.forget,
            backend=self.backend,
            model_args=self.model_args,
            prompt_format=self.prompt_format,
            retain_reference=self.reference,
            pre_unlearning_reference=self.pre_unlearning_reference,
            metadata=metadata,
            label=self.label,
            batch_size=self.batch_size,
            device=self.device,
            output=Path(runs),
            force=self.force,
        )


@dataclass
class ScoreArguments:
    """Where ``lm-unlearn score`` writes."""

    help_group = "score"

    output: str = field(
        default="results/runs", metadata=_help("runs folder (a leaderboard reads it)")
    )


@dataclass
class AuditArguments:
    """What ``lm-unlearn audit`` adds: the attacks, the comparisons and where results go."""

    help_group = "audit"

    attacks: str | None = field(
        default=None,
        metadata=_help(
            f"comma-separated: {', '.join(ATTACKS)} (default: every one that applies: TOFU "
            f"relearn, quantize, paraphrase; MUSE relearn, quantize; WMDP relearn, quantize, "
            f"fewshot)"
        ),
    )
    target: str | None = field(
        default=None,
        metadata=_help(
            "the model before unlearning (a model, or its scoring run folder or results file): "
            "recovery"
        ),
    )
    control: str | None = field(
        default=None,
        metadata=_help(
            "the retain model (never trained on the forget rows): relearning runs on it too, and "
            "its gain is reported beside"
        ),
    )
    control_label: str | None = field(default=None, metadata=_help("the control's name in tables"))
    output: str = field(default="results/audit", metadata=_help("the audit's table"))
    runs: str = field(
        default="results/runs",
        metadata=_help("scoring runs (a leaderboard reads them; default results/runs)"),
    )
    models_dir: str | None = field(
        default=None, metadata=_help("attacked models (default $LM_UNLEARN_CACHE/audit)")
    )
    relearn_split: str | None = field(
        default=None,
        metadata=_help(
            "TOFU: same-authors (default): relearn the first half of each author's rows, score "
            "the second half; other-authors: relearn the first half of the authors, score the "
            "others"
        ),
    )
    relearn_rows: str | None = field(
        default=None,
        metadata=_help("forget rows relearned by hand, start:stop touching one end; the other "
                       "rows are scored (MUSE: the forget documents relearned, default the "
                       "first half; WMDP: the texts of each forget corpus, default as many as "
                       "the steps read; every forget row is scored)"),
    )  # fmt: skip
    relearn_steps: int = field(default=10, metadata=_help("optimiser steps"))
    relearn_lr: float = field(default=1e-5, metadata=_help("constant learning rate"))
    relearn_batch_size: int = field(default=4, metadata=_help("rows per step"))
    relearn_lora: bool = field(default=False, metadata=_help("relearn a LoRA adapter"))
    relearn_seed: int = field(default=42, metadata=_help("relearning's random seed"))
    bits: str = field(default="8,4", metadata=_help("quantize: weight bits, 8 and/or 4"))
    fewshot_examples: int = field(
        default=FEWSHOT_EXAMPLES,
        metadata=_help("fewshot (WMDP): in-context examples of the same domain before a question"),
    )

    def __post_init__(self) -> None:
        if self.relearn_split not in (None, *RELEARN_SPLITS):
            raise ValueError(
                f"--relearn-split must be one of {', '.join(RELEARN_SPLITS)}, got "
                f"{self.relearn_split!r}"
            )

    def settings(self, model: str, scoring: ScoringArguments, command: str) -> AuditSettings:
        relearn = RelearnSettings(
            rows=self.relearn_rows, split=self.relearn_split, steps=self.relearn_steps,
            learning_rate=self.relearn_lr, batch_size=self.relearn_batch_size,
            lora=self.relearn_lora, seed=self.relearn_seed,
        )  # fmt: skip
        return AuditSettings(
            model=model, scoring=scoring.settings(Path(self.runs)), attacks=self.attacks,
            target=self.target, control=self.control, control_label=self.control_label,
            output=Path(self.output), relearn=relearn, base=scoring.base, bits=self.bits,
            models_dir=Path(self.models_dir) if self.models_dir else None, command=command,
            fewshot=self.fewshot_examples,
        )  # fmt: skip


@dataclass
class ReferenceArguments(RunArguments):
    """``lm-unlearn reference``: the model before unlearning, scored once."""

    help_group = "reference"

    model: str | None = field(
        default=None, metadata=_help("hub id or local path of the model before unlearning")
    )
    output: Path = field(kw_only=True, metadata=_help("reference file to write (JSON)"))
    tasks: str = field(default="tofu_forget01_unlearn", metadata=_help("comma-separated tasks"))
    apply_chat_template: bool = field(
        default=False, metadata=_help("ask in the tokenizer's chat template (as lm_eval's flag)")
    )
    from_samples: str | None = field(
        default=None, metadata=_help("convert an existing samples/results file instead")
    )


@dataclass
class LeaderboardArguments:
    """``lm-unlearn leaderboard``: where the tables go and how they rank."""

    help_group = "leaderboard"

    output: Path = field(default=Path("results"), metadata=_help("folder of the tables"))
    title: str = field(default="TOFU unlearning leaderboard", metadata=_help("the page's title"))
    rank_by: str | None = field(
        default=None,
        metadata=_help(
            "metric ranking each table (default: forget efficacy, else forget quality, else MU-9; "
            "MUSE: privleak; WMDP: its accuracy at matched utility)"
        ),
    )
    utility_tolerance: float = field(
        default=0.02,
        metadata=_help(
            "WMDP: how far MMLU accuracy may fall from the model's before unlearning for a run to "
            "rank among those that kept utility"
        ),
    )


@dataclass
class AggregateArguments:
    """``lm-unlearn aggregate``: every metric from logs that exist, no model run."""

    help_group = "aggregate"

    legacy_logs: str = field(metadata=_help("a TOFU legacy log directory (the four eval_*.json)"))
    reference_logs: str | None = field(
        default=None,
        metadata=_help(
            "the retain model's legacy log directory (or a samples/results file): forget quality"
        ),
    )
    pre_unlearning_logs: str | None = field(
        default=None,
        metadata=_help(
            "outputs of the model before unlearning (legacy log directory or reference file): "
            "cosine similarity and entailment on Real Authors / World Facts"
        ),
    )
    tokenizer: str | None = field(
        default=None,
        metadata=_help("tokenizer of the logged model (dir, hub id or .gguf): token entropy"),
    )
    embedding_model: str | None = field(
        default=None, metadata=_help("sentence-embedding model (cosine similarity)")
    )
    nli_model: str | None = field(default=None, metadata=_help("NLI classifier (entailment)"))
    bertscore: bool = field(default=False, metadata=_help("also report <set>_bertscore_f1"))
    bertscore_model: str | None = field(
        default=None, metadata=_help("model of BERTScore (default roberta-large)")
    )
    device: str | None = field(default=None, metadata=_help("device of the auxiliary models"))
    json: bool = field(default=False, metadata=_help("print JSON instead of a table"))


@dataclass
class DoctorArguments:
    """``lm-unlearn doctor``: what to check besides the defaults."""

    help_group = "doctor"

    embedding_model: str | None = field(
        default=None, metadata=_help("check this embedding model instead of the default")
    )
    nli_model: str | None = field(
        default=None, metadata=_help("check this NLI model instead of the default")
    )
    device: str | None = field(default=None, metadata=_help("device of the metric models"))
    data_dir: str | None = field(
        default=None, metadata=_help("TOFU directory (default: $TOFU_DATA_DIR or the hub)")
    )


@dataclass
class DemoArguments:
    """``lm-unlearn demo``: what to change in the embedded default."""

    help_group = "demo"

    benchmark: str = field(
        default="tofu",
        metadata=_help(
            "tofu (unlearn TOFU's forget01 authors) or lume (unlearn LUME's biographies with "
            "personal data; data from $LUME_DATA_DIR, else the official repository)"
        ),
    )
    output: Path | None = field(
        default=None, metadata=_help("the demo's results (default results/demo, results/lume-demo)")
    )
    model: str | None = field(
        default=None, metadata=_help("base model (default: the packaged SmolLM2-135M-Instruct)")
    )
    methods: str | None = field(
        default=None,
        metadata=_help("comma-separated (default ME+GD,IDK+AP,GA+GD; LUME: GA+GD,NPO+GD,IDK+AP)"),
    )
    retain_rows: int | None = field(
        default=None,
        metadata=_help("TOFU: retain rows learned and scored (default 20)"),
    )
    utility_rows: int | None = field(
        default=None, metadata=_help("TOFU: Real Authors / World Facts rows scored (default 20)")
    )
    biographies: int | None = field(
        default=None,
        metadata=_help(
            "LUME: biographies (six rows each) in each of the forget, retain and holdout sets "
            "(default 8)"
        ),
    )
    audit: str | None = field(
        default=None,
        metadata=_help(
            "the attacks of the audit of every unlearned model (lm-unlearn audit; TOFU: default "
            "relearn, also quantize, paraphrase; LUME: default none, also quantize)"
        ),
    )
    no_audit: bool = field(default=False, metadata=_help("skip the audit"))
    no_matching: bool = field(
        default=False,
        metadata=_help(
            "train every method for its full epochs instead of stopping it at the retain "
            "model's forgetting (matched forgetting)"
        ),
    )

    def settings(self) -> DemoSettings | LumeDemoSettings:
        """The demo's settings: the chosen benchmark's embedded default with what was given."""
        given = {"retain_rows": self.retain_rows, "utility_rows": self.utility_rows,
                 "biographies": self.biographies}  # fmt: skip
        own = {"tofu": ("retain_rows", "utility_rows"), "lume": ("biographies",)}
        if self.benchmark not in own:
            raise ValueError(f"--benchmark must be tofu or lume, got {self.benchmark!r}")
        wrong = [name for name, value in given.items()
                 if value is not None and name not in own[self.benchmark]]  # fmt: skip
        if wrong:
            flags = ", ".join("--" + name.replace("_", "-") for name in wrong)
            raise ValueError(f"{flags}: not an option of the {self.benchmark} demo")
        if self.benchmark == "lume":
            settings: DemoSettings | LumeDemoSettings = LumeDemoSettings()
            if self.biographies is not None:
                settings.forget_biographies = settings.retain_biographies = self.biographies
                settings.holdout_biographies = self.biographies
        else:
            settings = DemoSettings()
            for name in own["tofu"]:
                if given[name] is not None:
                    setattr(settings, name, given[name])
        if self.output is not None:
            settings.output = self.output
        if self.methods:
            settings.methods = tuple(m.strip() for m in self.methods.split(",") if m.strip())
        if self.model:
            settings.model = self.model
        if self.audit:
            settings.audit = self.audit
        if self.no_audit:
            settings.audit = None
        if self.no_matching:
            settings.match_forgetting = False
        return settings
