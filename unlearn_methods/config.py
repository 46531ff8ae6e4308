"""The options of lm-unlearn's training commands, declared once: ``transformers.TrainingArguments``
subclasses, as TRL declares its trainers' configs.

:class:`TrainingConfig` holds what ``train`` and ``finetune`` share (the model to load, its prompt
format and data folder, LoRA, the batch) and changes TrainingArguments' defaults to the paper's
setup (lr 1e-5, 5 epochs, weight decay 0.01, batch 4 per device, an effective batch of 32 by
accumulation). :class:`UnlearnConfig` adds the unlearning method and the evaluation during
training; :class:`FinetuneConfig` the rows to learn. ``HfArgumentParser`` turns the fields into the
commands' flags (``--learning_rate`` / ``--learning-rate``) and a YAML config's keys are the same
names, so every TrainingArguments field (bf16, DeepSpeed, FSDP, schedulers, logging) works unchanged.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from transformers import TrainingArguments

COMPAT_MODES = ("paper", "closer-look")
PAIRINGS = ("random", "fixed")
DTYPES = ("float32", "bfloat16", "float16", "float64")
DEFAULT_EFFECTIVE_BATCH = 32
# forget_coeff of the paper, by forget term and scenario; every other combination uses 1.0.
PAPER_FORGET_COEFF = {("ME", "tofu"): 0.1, ("ME", "continual"): 1.0, ("ME", "realworld"): 0.5}


def default_forget_coeff(forget_term: str, scenario: str = "tofu") -> float:
    return PAPER_FORGET_COEFF.get((forget_term.upper(), scenario), 1.0)


def world_size() -> int:
    """Processes of this run (``accelerate launch`` / ``torchrun`` set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def gpu_available() -> bool:
    import torch

    return torch.cuda.is_available()


def gpu_supports_bf16() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def _help(text: str, **more: Any) -> dict[str, Any]:
    return {"help": text, **more}


@dataclass
class TrainingConfig(TrainingArguments):
    """What every lm-unlearn training command takes; see the module docstring."""

    help_group = "model, data and training"

    model: str | None = field(
        default=None, metadata=_help("hub id or local path of the model to train (required)")
    )
    output_dir: str | None = field(
        default=None,
        metadata=_help(
            "output folder: the checkpoint or adapter, its tokenizer and card (required)",
            aliases=["--output"],
        ),
    )
    prompt_format: str | None = field(
        default=None,
        metadata=_help(
            "chat, plain, llama2, phi or lume (default: the scoring rule, docs/scoring.md: TOFU's "
            "format for its checkpoints, else chat with a chat template, else plain)"
        ),
    )
    max_length: int = field(default=500, metadata=_help("tokens per example"))
    data_dir: str | None = field(
        default=None, metadata=_help("local TOFU folder (default: $TOFU_DATA_DIR, else the hub)")
    )
    muse_data_dir: str | None = field(
        default=None,
        metadata=_help(
            "local MUSE corpus folder for muse-news: / muse-books: data (default: "
            "$MUSE_DATA_DIR, else the hub)"
        ),
    )
    wmdp_corpora_dir: str | None = field(
        default=None,
        metadata=_help(
            "local folder of WMDP's corpora for wmdp: data, as <corpus>.jsonl (default: "
            "$WMDP_CORPORA_DIR, else the hub)"
        ),
    )
    lume_data_dir: str | None = field(
        default=None,
        metadata=_help(
            "local LUME folder (forget.jsonl, retain.jsonl) for lume: data (default: "
            "$LUME_DATA_DIR, else LUME's repository)"
        ),
    )
    pad_token: str | None = field(
        default=None, metadata=_help("'eos' pads with the end-of-sequence token")
    )
    dtype: str | None = field(
        default=None,
        metadata=_help(
            f"weights dtype: {', '.join(DTYPES)} (default bfloat16 with bf16, else float32)"
        ),
    )
    trust_remote_code: bool = field(default=False, metadata=_help("allow model code from the hub"))
    lora: bool = field(default=False, metadata=_help("train a LoRA adapter on every linear layer"))
    lora_r: int = field(default=8, metadata=_help("LoRA rank"))
    lora_alpha: int = field(default=32, metadata=_help("LoRA alpha"))
    lora_dropout: float = field(default=0.05, metadata=_help("LoRA dropout"))
    overwrite: bool = field(default=False, metadata=_help("replace what the output folder holds"))
    effective_batch_size: int | None = field(
        default=None,
        metadata=_help(
            "examples per optimiser step on all devices together, reached by gradient "
            f"accumulation (default {DEFAULT_EFFECTIVE_BATCH}; or give "
            "--gradient_accumulation_steps instead)"
        ),
    )
    # TrainingArguments' fields, with the paper's defaults
    learning_rate: float = field(default=1e-5, metadata=_help("peak learning rate (AdamW)"))
    num_train_epochs: float = field(default=5.0, metadata=_help("training epochs"))
    max_steps: int = field(
        default=-1, metadata=_help("optimiser steps (default: counted from the epochs)")
    )
    weight_decay: float = field(default=0.01, metadata=_help("AdamW weight decay"))
    per_device_train_batch_size: int = field(
        default=4, metadata=_help("examples per device in one forward pass")
    )
    gradient_accumulation_steps: int | None = field(
        default=None, metadata=_help("forward passes per optimiser step (default: from the batch)")
    )
    warmup_steps: float | None = field(
        default=None, metadata=_help("linear warm-up steps (default: the command's schedule)")
    )
    bf16: bool | None = field(
        default=None,
        metadata=_help(
            "bf16 mixed precision (default: on when the GPU supports it)", nargs="?", const=True
        ),
    )
    save_steps: float | None = field(
        default=None, metadata=_help("save a checkpoint every N steps (default: the strategy's)")
    )
    logging_steps: float = 1
    remove_unused_columns: bool = False
    disable_tqdm: bool = False

    def __post_init__(self) -> None:
        # Filled in before TrainingArguments checks them; idempotent, so dataclasses.replace
        # (a continual run's next request, the trainer's copy) gives the same values.
        if self.bf16 is None:
            self.bf16 = gpu_supports_bf16()
        if not self.use_cpu and not gpu_available():
            # say so: under a multi-process launcher this makes DDP use gloo on CPUs
            self.use_cpu = True
        self.gradient_accumulation_steps = self.accumulation_steps()
        if self.save_steps is not None and self.save_strategy == "epoch":
            self.save_strategy = "steps"
        warmup = self.warmup_steps  # None: the command's schedule, known once the data is
        self.warmup_steps = 0 if warmup is None else warmup
        output = self.output_dir  # None: not given (TrainingArguments would name a folder)
        super().__post_init__()
        self.warmup_steps, self.output_dir = warmup, output
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    def accumulation_steps(self) -> int:
        """Gradient accumulation: as given, else what reaches the effective batch here."""
        per_step = self.per_device_train_batch_size * world_size()
        wanted = self.effective_batch_size
        reaching = max(1, math.ceil((wanted or DEFAULT_EFFECTIVE_BATCH) / per_step))
        given = self.gradient_accumulation_steps
        if given is None:
            return reaching
        if wanted is not None and given != reaching:
            raise ValueError(
                f"--effective_batch_size {wanted} needs {reaching} accumulation steps at "
                f"{per_step} examples per step, not --gradient_accumulation_steps {given}: give "
                f"one of the two"
            )
        return given

    @property
    def effective_batch(self) -> int:
        return self.per_device_train_batch_size * world_size() * self.gradient_accumulation_steps

    def check_required(self) -> None:
        missing = [name for name in self.required_fields() if not getattr(self, name)]
        if missing:
            shown = ", ".join("--" + name for name in missing)
            raise ValueError(f"missing {shown} (on the command line or in --config)")

    def required_fields(self) -> tuple[str, ...]:
        return ("model", "output_dir")

    def given_options(self) -> dict[str, Any]:
        """The options that define this run: the project's own fields and every
        TrainingArguments field that differs from the defaults (for cards and resuming)."""
        values = plain_values(self)
        defaults = plain_values(type(self)())
        own = set(project_fields(type(self)))
        return {
            k: v
            for k, v in values.items()
            if k in own or (v != defaults.get(k) and k not in MACHINE_FIELDS)
        }


def plain_values(config: TrainingArguments) -> dict[str, Any]:
    """Field values as JSON: enums (``SaveStrategy.EPOCH``) as their values."""
    import enum

    def plain(value: Any) -> Any:
        return value.value if isinstance(value, enum.Enum) else value

    return {f.name: plain(getattr(config, f.name)) for f in fields(config) if f.init}


# Set from the machine, not by the user: left out of cards and run settings.
MACHINE_FIELDS = {"local_rank", "logging_dir", "use_cpu", "dataloader_pin_memory", "output_dir"}


def project_fields(config_type: type) -> list[str]:
    """The fields lm-unlearn declares (its own, and TrainingArguments' it gives new defaults)."""
    import inspect

    declared: set[str] = set()
    for cls in config_type.__mro__:
        if cls.__module__ == __name__:
            declared |= set(inspect.get_annotations(cls))
    return [f.name for f in fields(config_type) if f.name in declared]


@dataclass
class UnlearnConfig(TrainingConfig):
    """Arguments of :class:`~unlearn_methods.trainer.UnlearnTrainer` and ``lm-unlearn train``:
    loss = forget_coeff · forget term + reg_coeff · regulariser."""

    help_group = "unlearning"

    method: str | None = field(
        default=None,
        metadata=_help("FORGET+REG, e.g. ME+GD, IDK+AP, GA+GD, NPO+KL, SimNPO+GD (required)"),
    )
    forget: str = field(
        default="forget01",
        metadata=_help(
            "forget rows: forget01, forget05, forget10, a slice (forget10[360:400]), or a text "
            "corpus (muse-news:forget, muse-books:forget, wmdp:cyber-forget-corpus, text:PATH)"
        ),
    )
    retain: str | None = field(
        default=None,
        metadata=_help(
            "retain rows (default: the complement, e.g. retain99; muse-news:retain1 for MUSE, "
            "wikitext for WMDP's corpora); e.g. retain90,forget10[:360]"
        ),
    )
    targets: str | None = field(
        default=None,
        metadata=_help("train on these answers (an lm-unlearn reference file), not the dataset's"),
    )
    scenario: str = field(
        default="tofu",
        metadata=_help("tofu, continual or realworld (chooses the paper's forget_coeff)"),
    )
    pairing: str = field(
        default="random",
        metadata=_help("retain partner of each forget row: random (new each epoch) or fixed"),
    )
    forget_coeff: float | None = field(
        default=None, metadata=_help("weight of the forget term (default: the paper's)")
    )
    reg_coeff: float = field(default=1.0, metadata=_help("weight of the regulariser"))
    beta: float = field(default=0.1, metadata=_help("β of NPO, SimNPO, DPO and AP"))
    gamma: float = field(default=0.0, metadata=_help("SimNPO margin γ"))
    compat: str = field(
        default="paper",
        metadata=_help("paper, or closer-look: the public code's ME and KL variants"),
    )
    rmu_layer: int | None = field(
        default=None,
        metadata=_help(
            "RMU: the decoder layer whose output is steered, counted from 0 as RMU's layer_id "
            "(default: the middle one)"
        ),
    )
    rmu_steering: float = field(default=6.5, metadata=_help("RMU: target norm c"))
    rmu_alpha: float = field(default=100.0, metadata=_help("RMU: retain weight α"))
    rmu_update_layers: str | None = field(
        default=None,
        metadata=_help(
            "RMU: train only these decoder layers' MLP down-projections, as RMU's code does "
            "(e.g. 5,6,7; default: every weight)"
        ),
    )
    keep_checkpoints: bool = field(default=False, metadata=_help("keep checkpoints/ after the run"))
    # Evaluation during training and checkpoint selection (unlearn_methods/evaluation_plan.py)
    eval_every: int | None = field(
        default=None,
        metadata=_help("score the model being trained every N optimiser steps (the task)"),
    )
    eval_rows: int | None = field(
        default=None, metadata=_help("rows of each set per evaluation (default: all)")
    )
    eval_forget: str | None = field(
        default=None, metadata=_help("the forget split scored (default: the one unlearned)")
    )
    eval_metadata: dict[str, Any] | str | None = field(
        default=None, metadata=_help("more task options of the evaluations, as JSON")
    )
    select: str | None = field(
        default=None,
        metadata=_help(
            "keep the first evaluated checkpoint with METRIC<=VALUE (<, >=, >) and stop, or "
            "best:METRIC; the kept one is the output"
        ),
    )
    select_matching_reference: str | None = field(
        default=None,
        metadata=_help(
            "target: the retain model's own value of the --select metric (default "
            "forget_rougeL_recall) in this reference or results file"
        ),
    )
    stop_at_selection: bool = field(
        default=True,
        metadata=_help("stop at the --select target (--no-stop-at-selection trains on)"),
    )
    per_device_eval_batch_size: int = field(
        default=16, metadata=_help("batch size of the evaluations during training")
    )
    save_strategy: str = field(
        default="epoch", metadata=_help("checkpoints: epoch, steps (with --save_steps) or no")
    )
    seed: int = field(default=1001, metadata=_help("random seed"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.compat not in COMPAT_MODES:
            raise ValueError(f"--compat must be one of {COMPAT_MODES}, got {self.compat!r}")
        if self.pairing not in PAIRINGS:
            raise ValueError(f"--pairing must be one of {PAIRINGS}, got {self.pairing!r}")
        if self.beta <= 0:
            raise ValueError(f"--beta must be positive, got {self.beta}")
        if self.rmu_update_layers is not None:
            if str(self.method or "").upper() != "RMU":
                raise ValueError("--rmu-update-layers applies to --method RMU")
            if self.lora:
                raise ValueError("--rmu-update-layers trains chosen weights; drop --lora")
            self.update_layer_ids()  # checked here, before anything loads

    def update_layer_ids(self) -> list[int]:
        """The decoder layers of --rmu-update-layers."""
        try:
            layers = [int(p) for p in str(self.rmu_update_layers).split(",") if p.strip()]
        except ValueError:
            layers = []
        if not layers or min(layers) < 0:
            raise ValueError(
                f"--rmu-update-layers takes decoder layer numbers, e.g. 5,6,7; got "
                f"{self.rmu_update_layers!r}"
            )
        return layers

    def required_fields(self) -> tuple[str, ...]:
        return ("method", "model", "output_dir")


@dataclass
class FinetuneConfig(TrainingConfig):
    """``lm-unlearn finetune``: supervised fine-tuning on TOFU rows or text (a target or retain
    model)."""

    help_group = "fine-tuning"

    data: str = field(
        default="full",
        metadata=_help(
            "TOFU splits, each optionally cut (full, retain99, forget01,retain[:40]), or text "
            "corpora (muse-news:forget,muse-news:retain1, text:PATH)"
        ),
    )
    save_strategy: str = field(default="no", metadata=_help("checkpoints: no, epoch or steps"))
    seed: int = field(default=42, metadata=_help("random seed"))


CONFIGS_DIR = Path(__file__).resolve().parent / "configs"


def config_path(name: str | os.PathLike) -> Path:
    """A YAML file, or the name of a shipped config (``tofu_llama2``, ``tofu_phi``, ...)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = CONFIGS_DIR / f"{Path(name).stem}.yaml"
    if shipped.is_file():
        return shipped
    known = ", ".join(sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml")))
    raise FileNotFoundError(f"config {name} not found; the shipped configs are: {known}")


def load_config_file(
    path: str | os.PathLike, method: str | None = None, config_type: type = UnlearnConfig
) -> dict[str, Any]:
    """Options from a YAML file whose keys are the flags' names (``learning_rate``,
    ``per_device_train_batch_size``, any TrainingArguments field); a ``methods:`` section
    overrides them per method name."""
    import yaml

    from unlearn_methods.methods import resolve_method

    path = config_path(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of option names to values")
    per_method = raw.pop("methods", {}) or {}
    options = {k.replace("-", "_"): v for k, v in raw.items()}
    if method:
        wanted = resolve_method(method).name
        for name, overrides in per_method.items():
            if resolve_method(name).name == wanted:
                options.update({k.replace("-", "_"): v for k, v in (overrides or {}).items()})
    known = {f.name for f in fields(config_type) if f.init}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"{path}: unknown options {', '.join(unknown)} (the keys are the names of the "
            f"command's flags, e.g. learning_rate, num_train_epochs, per_device_train_batch_size)"
        )
    return options
