"""Configuration of an unlearning run: ``TrainingArguments`` plus the method's settings.

Like TRL's trainer configs, :class:`UnlearnConfig` extends ``transformers.TrainingArguments`` and
changes the defaults to the paper's training setup (lr 1e-5, 5 epochs, weight decay 0.01, linear
schedule, seed 1001, AdamW), so everything TrainingArguments offers (bf16, gradient checkpointing,
DeepSpeed, FSDP, resuming) works unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

COMPAT_MODES = ("paper", "closer-look")
# forget_coeff of the paper, by forget term and scenario; every other combination uses 1.0.
PAPER_FORGET_COEFF = {("ME", "tofu"): 0.1, ("ME", "continual"): 1.0, ("ME", "realworld"): 0.5}


def default_forget_coeff(forget_term: str, scenario: str = "tofu") -> float:
    return PAPER_FORGET_COEFF.get((forget_term.upper(), scenario), 1.0)


@dataclass
class UnlearnConfig(TrainingArguments):
    """Arguments of :class:`~unlearn_methods.trainer.UnlearnTrainer`.

    Parameters beyond ``TrainingArguments``:
        method: FORGET+REG name (``"ME+GD"``, ``"IDK+AP"``, ``"NPO+KL"``, ``"GA"``, ...).
        forget_coeff / reg_coeff: loss = forget_coeff · forget term + reg_coeff · regulariser.
        beta: β of NPO, SimNPO, DPO and AP. gamma: SimNPO's margin γ.
        compat: ``"paper"`` (default) or ``"closer-look"``, the public code's ME and KL variants.
        rmu_layer / rmu_steering / rmu_alpha: RMU's steered layer, target norm and retain weight.
    """

    method: str = field(default="ME+GD", metadata={"help": "FORGET+REG method name"})
    forget_coeff: float = field(default=1.0, metadata={"help": "weight of the forget term"})
    reg_coeff: float = field(default=1.0, metadata={"help": "weight of the regulariser"})
    beta: float = field(default=0.1, metadata={"help": "β of NPO, SimNPO, DPO and AP"})
    gamma: float = field(default=0.0, metadata={"help": "SimNPO margin γ"})
    compat: str = field(default="paper", metadata={"help": "paper or closer-look loss variants"})
    rmu_layer: int | None = field(default=None, metadata={"help": "RMU layer (default: middle)"})
    rmu_steering: float = field(default=6.5, metadata={"help": "RMU target norm c"})
    rmu_alpha: float = field(default=100.0, metadata={"help": "RMU retain weight α"})

    # TrainingArguments defaults changed to the paper's setup
    learning_rate: float = 1e-5
    num_train_epochs: float = 5.0
    weight_decay: float = 0.01
    lr_scheduler_type: str = "linear"
    seed: int = 1001
    logging_steps: float = 1
    save_strategy: str = "epoch"
    report_to: str | list[str] = "none"
    remove_unused_columns: bool = False
    disable_tqdm: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.compat not in COMPAT_MODES:
            raise ValueError(f"compat must be one of {COMPAT_MODES}, got {self.compat!r}")
        if self.beta <= 0:
            raise ValueError(f"beta must be positive, got {self.beta}")


# Set by lm-unlearn itself from its own options: use those instead.
MANAGED_FIELDS = {"output_dir"}


def training_arguments_from(tokens: list[str]) -> dict[str, object]:
    """Any ``TrainingArguments`` / :class:`UnlearnConfig` field given on a command line, parsed
    by ``transformers.HfArgumentParser`` as TRL's own commands parse theirs: ``--report_to
    wandb``, ``--lr_scheduler_type cosine``, ``--deepspeed ds.json``, ...; only the fields
    actually given are returned, so the rest keep lm-unlearn's values."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(UnlearnConfig)
    namespace, unknown = parser.parse_known_args(tokens)
    if unknown:
        raise ValueError(
            f"unknown options {' '.join(unknown)} (neither lm-unlearn's nor a TrainingArguments "
            f"field; see --help and transformers' TrainingArguments)"
        )
    given = {t[2:].split("=", 1)[0].replace("-", "_") for t in tokens if t.startswith("--")}
    chosen = {
        name: plain_value(getattr(namespace, name)) for name in given if hasattr(namespace, name)
    }
    return check_training_arguments(chosen)


def plain_value(value: object) -> object:
    """An enum (the parser's ``SchedulerType.COSINE``) as its value, so run cards stay JSON."""
    import enum

    return value.value if isinstance(value, enum.Enum) else value


def check_training_arguments(values: dict[str, object]) -> dict[str, object]:
    """Field names of ``TrainingArguments`` (from a command line or a YAML config)."""
    from dataclasses import fields

    known = {f.name for f in fields(UnlearnConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown TrainingArguments fields {unknown}")
    managed = sorted(set(values) & MANAGED_FIELDS)
    if managed:
        raise ValueError(f"{', '.join(managed)} is set by lm-unlearn: use --output")
    return values
