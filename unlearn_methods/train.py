"""``lm-unlearn train``: unlearn a TOFU forget split and write a checkpoint with its run card.

The output folder holds a normal Hugging Face checkpoint (or a PEFT adapter with ``--lora``), the
tokenizer, and ``run_card.json`` (method, hyper-parameters, data hash, seed, versions, git commit,
per-step and final losses). Intermediate checkpoints go to ``checkpoints/`` and are removed when
the run finishes; running the same command again after an interruption resumes from the last one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from harness_ext.model_files import add_reader_compatibility
from tofu_tasks.prompts import choose_prompt_format, get_prompt_format
from unlearn_methods.config import UnlearnConfig, default_forget_coeff
from unlearn_methods.data import (
    PromptEncoder,
    UnlearnCollator,
    UnlearnDataset,
    check_tokenizer,
    load_unlearn_data,
)
from unlearn_methods.distributed import from_main_process
from unlearn_methods.methods import resolve_method

RUN_CARD = "run_card.json"
CHECKPOINTS = "checkpoints"


class OutputDirError(ValueError):
    """The output folder holds something a new run must not overwrite."""


@dataclass
class TrainOptions:
    """Everything ``lm-unlearn train`` accepts (also the keys of a ``--config`` YAML file)."""

    method: str
    model: str
    output: str
    forget: str = "forget01"
    retain: str | None = None
    targets: str | None = (
        None  # answers to train on instead of the dataset's (lm-unlearn reference)
    )
    scenario: str = "tofu"
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    prompt_format: str | None = None  # default: chat if the tokenizer has a template, else plain
    max_length: int = 500
    epochs: float = 5.0
    max_steps: int = -1
    learning_rate: float = 1e-5
    weight_decay: float = 0.01
    per_device_batch_size: int = 4
    effective_batch_size: int = 32
    forget_coeff: float | None = None  # default: the paper's for the method and scenario
    reg_coeff: float = 1.0
    beta: float = 0.1
    gamma: float = 0.0
    compat: str = "paper"
    pairing: str = "random"
    seed: int = 1001
    bf16: bool | None = None  # default: on when the GPU supports it
    dtype: str | None = None  # weights dtype; default bfloat16 with bf16, else float32
    gradient_checkpointing: bool = False
    save_steps: int | None = None  # default: a checkpoint per epoch
    data_dir: str | None = None
    pad_token: str | None = None  # "eos": pad with the end-of-sequence token
    overwrite: bool = False
    keep_checkpoints: bool = False
    rmu_layer: int | None = None
    rmu_steering: float = 6.5
    rmu_alpha: float = 100.0
    trust_remote_code: bool = False
    # Evaluation during training and checkpoint selection (unlearn_methods/evaluation.py)
    eval_every: int | None = None  # score the model every N optimiser steps
    eval_rows: int | None = None  # rows per set of each evaluation (task option max_rows_per_set)
    eval_split: str | None = None  # forget split scored (default: the one unlearned)
    eval_batch_size: int = 16
    eval_metadata: dict[str, Any] | str | None = None  # more task options (JSON on the CLI)
    select: str | None = None  # "forget_rougeL_recall<=0.4", "best:tofu_model_utility"
    select_matching_reference: str | None = None  # target: the retain model's value in this file
    stop_at_selection: bool = True  # --no-stop trains on after the target is reached
    # Any other TrainingArguments field (``--lr_scheduler_type cosine``, ``--report_to wandb``,
    # ``--deepspeed ds.json``, ...): given values win over the ones lm-unlearn derives.
    training_args: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


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


def load_config_file(path: str | os.PathLike, method: str | None = None) -> dict[str, Any]:
    """Options from a YAML file; a ``methods:`` section overrides them per method name."""
    import yaml

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
    # keys that are no lm-unlearn option may be any TrainingArguments field
    extra = {k: options.pop(k) for k in set(options) - TrainOptions.names()}
    if extra:
        from unlearn_methods.config import check_training_arguments

        try:
            training = check_training_arguments(extra)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
        options["training_args"] = {**training, **(options.get("training_args") or {})}
    return options


# ---------------------------------------------------------------------- output folder
RUN_SETTINGS = "run_settings.json"  # the resolved settings of a run in progress
LOCK = ".lock"
BOOKKEEPING = {CHECKPOINTS, RUN_SETTINGS, LOCK}


def complete_checkpoint(folder: Path) -> bool:
    """A checkpoint written to the end: the marker, and a trainer state that parses."""
    from unlearn_methods.trainer import COMPLETE

    if not (folder / COMPLETE).is_file():
        return False
    try:
        json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return True


def resumable_checkpoint(output: Path) -> Path | None:
    """The newest complete checkpoint; incomplete ones (a run killed while writing one) are
    reported and set aside under a hidden name, so nothing resumes from them."""
    folder = output / CHECKPOINTS
    found = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    complete = [p for p in found if complete_checkpoint(p)]
    for incomplete in (p for p in found if p not in complete):
        aside = incomplete.with_name(f".incomplete-{incomplete.name}-{os.getpid()}")
        os.replace(incomplete, aside)
        print(f"skipped {incomplete}: written only in part (moved to {aside.name})")
    return complete[-1] if complete else None


def prepare_output(output: Path, overwrite: bool) -> Path | None:
    """Check the output folder; return the checkpoint to resume from, if any."""
    if not output.exists():
        return None
    if overwrite:
        for entry in output.iterdir():
            if entry.name != LOCK:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        return None
    if (output / RUN_CARD).exists():
        raise OutputDirError(
            f"{output} already holds a finished run ({RUN_CARD}); choose another --output or pass "
            f"--overwrite"
        )
    others = [p.name for p in output.iterdir() if p.name not in BOOKKEEPING]
    if others:
        raise OutputDirError(
            f"{output} exists and holds other files ({', '.join(sorted(others)[:5])}); choose an "
            f"empty folder or pass --overwrite"
        )
    return resumable_checkpoint(output)


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def output_lock(output: Path):
    """One training run per output folder: a second one refuses while the first holds the lock
    (the processes of one multi-GPU run share it through rank 0)."""
    if not is_main_process():
        yield
        return
    import fcntl

    existed = output.exists()
    output.mkdir(parents=True, exist_ok=True)
    handle = open(output / LOCK, "a+")  # noqa: SIM115  (held for the whole run)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise OutputDirError(
            f"another lm-unlearn run is writing to {output}; wait for it or choose another --output"
        ) from None
    try:
        yield
    finally:
        # the lock file stays only beside an interrupted run's state (it is resumed there)
        if not (output / RUN_SETTINGS).exists() or (output / RUN_CARD).exists():
            (output / LOCK).unlink(missing_ok=True)
        if not existed and output.is_dir() and not any(output.iterdir()):
            output.rmdir()
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def check_same_run(output: Path, settings: dict[str, Any], resuming: bool) -> None:
    """A resumed run must be the interrupted one; a new run records its settings."""
    path = output / RUN_SETTINGS
    if resuming and path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        if changed:
            listed = "; ".join(
                f"{k}: {before.get(k)!r} then, {settings.get(k)!r} now" for k in changed
            )
            raise OutputDirError(
                f"{output} holds an interrupted run with other settings ({listed}); rerun it with "
                f"its settings to resume, or pass --overwrite to start this one instead"
            )
    else:
        from harness_ext.provenance import write_json_atomic

        write_json_atomic(path, settings)


# ---------------------------------------------------------------------- building blocks
def load_training_tokenizer(options: TrainOptions):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            options.model, trust_remote_code=options.trust_remote_code
        )
    except OSError as err:  # transformers' message does not name what it was loading
        raise OSError(f"cannot load the tokenizer of {options.model}: {err}") from err
    if options.pad_token == "eos":
        tokenizer.pad_token = tokenizer.eos_token
    elif options.pad_token:
        raise ValueError(f"--pad-token accepts only 'eos', got {options.pad_token!r}")
    check_tokenizer(tokenizer, f"the tokenizer of {options.model}")
    return tokenizer


def training_prompt_format(options: TrainOptions, tokenizer=None) -> str:
    """The prompt format the run trains in, by the rule scoring follows (so a model is scored
    the way it was trained): as asked, else TOFU's legacy format for its checkpoints and their
    descendants, else the tokenizer's chat template, else plain. The tokenizer is loaded only
    when the choice comes to it and none is given."""
    name, _ = choose_prompt_format(
        options.prompt_format,
        options.model,
        lambda: bool(getattr(tokenizer or load_training_tokenizer(options), "chat_template", None)),
    )
    return get_prompt_format(name).name


def use_bf16(options: TrainOptions) -> bool:
    if options.bf16 is not None:
        return bool(options.bf16)
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def adapter_base(model: str) -> str | None:
    """The base model of a PEFT adapter folder (None for anything else)."""
    config = Path(model).expanduser() / "adapter_config.json"
    if not config.is_file():
        return None
    base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{config} names no base model (base_model_name_or_path)")
    return base


def load_model(options: TrainOptions, bf16: bool, tokenizer, *, trainable_adapter: bool = False):
    """The model to unlearn from. An adapter folder (a LoRA run, e.g. the previous request of a
    continual run) is its base with the adapter applied: merged into the weights, or, with
    ``trainable_adapter``, kept as the PEFT adapter that training continues."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = (
        getattr(torch, options.dtype)
        if options.dtype
        else (torch.bfloat16 if bf16 else torch.float32)
    )
    base = adapter_base(options.model)
    from harness_ext.model_files import check_safetensors

    for folder in (options.model, base):
        if folder and Path(folder).expanduser().is_dir():
            check_safetensors(Path(folder).expanduser())
    model = AutoModelForCausalLM.from_pretrained(
        base or options.model, dtype=dtype, trust_remote_code=options.trust_remote_code
    )
    if base:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, options.model, is_trainable=trainable_adapter)
        if not trainable_adapter:
            model = model.merge_and_unload()
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def lora_config(options: TrainOptions):
    from peft import LoraConfig

    return LoraConfig(
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules="all-linear",  # every linear layer except the output head
        task_type="CAUSAL_LM",
    )


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def accumulation_steps(options: TrainOptions) -> int:
    """Gradient accumulation that reaches the effective batch on this many devices."""
    per_step = options.per_device_batch_size * world_size()
    return max(1, math.ceil(options.effective_batch_size / per_step))


def paper_schedule(forget_rows: int, epochs: float, effective_batch: int) -> tuple[int, int]:
    """(optimiser steps, warm-up steps) counted as the paper's runs count them:
    floor(epochs · |forget| / batch) steps, and one epoch of floor(|forget| / batch) warm-up
    steps when that is more than one step. The count is the project's own, so it does not
    change with the transformers version (forget01/05/10 at batch 32, 5 epochs: 6/31/62 steps,
    0/6/12 warm-up)."""
    steps = max(1, int(epochs * forget_rows) // effective_batch)
    per_epoch = forget_rows // effective_batch
    return steps, per_epoch if per_epoch > 1 else 0


def resolve_forget_coeff(options: TrainOptions, forget_term: str) -> float:
    if options.forget_coeff is not None:
        return options.forget_coeff
    return default_forget_coeff(forget_term, options.scenario)


def resolved_run(options: TrainOptions, data, prompt_format: str) -> dict[str, Any]:
    """The run as it will train: what ``--dry-run`` prints and the run card records."""
    method = resolve_method(options.method)
    given = options.training_args
    per_device = given.get("per_device_train_batch_size", options.per_device_batch_size)
    accumulation = given.get("gradient_accumulation_steps", accumulation_steps(options))
    effective = per_device * world_size() * accumulation
    epochs = given.get("num_train_epochs", options.epochs)
    max_steps, warmup = paper_schedule(len(data.forget), epochs, effective)
    budget = given.get("max_steps", options.max_steps)
    if budget and budget > 0:  # a step budget of the user's: warm up for one epoch's share of
        max_steps = budget  # it, as the paper's schedule does
        share = int(max_steps / max(epochs, 1.0))
        warmup = share if share > 1 else 0
    warmup = given.get("warmup_steps", warmup)
    return {
        "method": method.name,
        "compat": options.compat,
        "forget_coeff": resolve_forget_coeff(options, method.forget.name),
        "reg_coeff": options.reg_coeff,
        "beta": options.beta,
        "model": options.model,
        "lora": options.lora,
        "prompt_format": prompt_format,
        "max_length": options.max_length,
        "epochs": epochs,
        "max_steps": max_steps,
        "warmup_steps": warmup,
        "effective_batch_size": effective,
        "per_device_batch_size": per_device,
        "gradient_accumulation_steps": accumulation,
        "world_size": world_size(),
        "learning_rate": given.get("learning_rate", options.learning_rate),
        "lr_scheduler_type": str(given.get("lr_scheduler_type", "linear")),
        "weight_decay": given.get("weight_decay", options.weight_decay),
        "training_args": given,
        "pairing": options.pairing,
        "seed": options.seed,
        "forget_split": data.forget_split,
        "retain_split": data.retain_split,
        "forget_rows": len(data.forget),
        "retain_rows": len(data.retain),
        "refusals": len(data.refusals),
        "bf16": use_bf16(options),
        "output": options.output,
        **evaluation_settings(options, prompt_format),
    }


def evaluation_settings(options: TrainOptions, prompt_format: str) -> dict[str, Any]:
    """``{"evaluation": plan}`` of a run that evaluates during training, else nothing (so the
    settings of runs without it stay as they were)."""
    from unlearn_methods.evaluation import plan_evaluation

    plan = plan_evaluation(options, prompt_format)
    return {"evaluation": plan.settings()} if plan else {}


def dry_run(options: TrainOptions) -> dict[str, Any]:
    """The resolved run, without loading the model or touching the output folder."""
    resolve_method(options.method)
    data = load_unlearn_data(options.forget, options.retain, options.data_dir, options.targets)
    return resolved_run(options, data, training_prompt_format(options))


# ---------------------------------------------------------------------- the run
@dataclass
class PreparedRun:
    """A trainer ready to run, with what the run card needs to describe it."""

    trainer: Any
    tokenizer: Any
    data: Any
    prompt_format: str
    forget_coeff: float
    accumulation: int


def build_run(options: TrainOptions, callbacks: list | None = None) -> PreparedRun:
    """Load tokenizer, data and model and build the trainer (``train`` runs it)."""
    import torch

    method = resolve_method(options.method)  # fail fast on an unknown name
    output = Path(options.output)
    tokenizer = load_training_tokenizer(options)
    prompt_format = training_prompt_format(options, tokenizer)
    data = load_unlearn_data(options.forget, options.retain, options.data_dir, options.targets)
    encoder = PromptEncoder(tokenizer, get_prompt_format(prompt_format), options.max_length)
    dataset = UnlearnDataset(data, encoder, method.needs, options.pairing, options.seed)
    pad_to = options.max_length if options.compat == "closer-look" else None
    collator = UnlearnCollator(tokenizer.pad_token_id, method.needs, pad_to)

    bf16 = use_bf16(options)
    resolved = resolved_run(options, data, prompt_format)
    accumulation = resolved["gradient_accumulation_steps"]
    forget_coeff = resolved["forget_coeff"]
    derived = dict(
        output_dir=str(output / CHECKPOINTS),
        method=method.name,
        forget_coeff=forget_coeff,
        reg_coeff=options.reg_coeff,
        beta=options.beta,
        gamma=options.gamma,
        compat=options.compat,
        rmu_layer=options.rmu_layer,
        rmu_steering=options.rmu_steering,
        rmu_alpha=options.rmu_alpha,
        learning_rate=options.learning_rate,
        weight_decay=options.weight_decay,
        num_train_epochs=options.epochs,
        max_steps=resolved["max_steps"],  # counted here, as the paper's runs do
        per_device_train_batch_size=options.per_device_batch_size,
        gradient_accumulation_steps=accumulation,
        warmup_steps=resolved["warmup_steps"],  # the paper: one epoch of warm-up
        bf16=bf16,
        activation_checkpointing=options.gradient_checkpointing,
        dataloader_pin_memory=torch.cuda.is_available(),
        # Without a GPU, say so: under a multi-process launcher this makes DDP use gloo on CPUs.
        use_cpu=not torch.cuda.is_available(),
        # RMU reads a middle layer only, leaving the top of the network unused on forget text.
        ddp_find_unused_parameters=method.uses_hidden_states,
        save_strategy="steps" if options.save_steps else "epoch",
        save_steps=options.save_steps or 500,
        seed=options.seed,
        data_seed=options.seed,
    )
    # TrainingArguments fields given by the user win over the derived ones
    args = UnlearnConfig(**{**derived, **options.training_args})
    # LoRA from an adapter (a continual run's previous request): training continues that adapter,
    # and the reference is the model it gives (base + adapter), not the bare base.
    continue_adapter = options.lora and adapter_base(options.model) is not None
    model = load_model(options, bf16, tokenizer, trainable_adapter=continue_adapter)
    reference = None
    if continue_adapter and method.needs_reference:
        reference = load_model(options, bf16, tokenizer)
    from unlearn_methods.trainer import UnlearnTrainer

    trainer = UnlearnTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        processing_class=tokenizer,
        ref_model=reference,
        peft_config=lora_config(options) if options.lora and not continue_adapter else None,
        callbacks=callbacks,
        method=method,
    )
    return PreparedRun(trainer, tokenizer, data, prompt_format, forget_coeff, accumulation)


def train(options: TrainOptions) -> Path:
    """Run one unlearning job; returns the output folder."""
    resolve_method(options.method)  # fail fast on an unknown name, before touching the folder
    output = Path(options.output)
    settings = dry_run(options)  # data, tokenizer and options checked before anything is written
    with output_lock(output):
        return _train(options, output, settings)


def _train(options: TrainOptions, output: Path, settings: dict[str, Any]) -> Path:
    # Only rank 0 reads and tidies the folder (the other ranks would see its files half-written);
    # they learn the checkpoint to resume from once the process group exists.
    resume_from = None
    if is_main_process():
        resume_from = prepare_output(output, options.overwrite)
        check_same_run(output, settings, resuming=resume_from is not None)
    from unlearn_methods.evaluation import EvaluateDuringTraining, plan_evaluation
    from unlearn_methods.trainer import MarkCompleteCheckpoints

    plan = plan_evaluation(options, settings["prompt_format"])
    evaluation = EvaluateDuringTraining(plan) if plan else None
    # the evaluation's on_save writes into a checkpoint before it is marked complete
    callbacks = [c for c in (evaluation, MarkCompleteCheckpoints()) if c is not None]
    run = build_run(options, callbacks=callbacks)
    resume_from = from_main_process(resume_from)
    trainer = run.trainer
    if evaluation:
        evaluation.attach(trainer, resume_from)
    if trainer.is_world_process_zero():
        print(
            f"unlearning {run.data.forget_split} ({len(run.data.forget)} rows, retain "
            f"{run.data.retain_split}) from {options.model} with {trainer.method.name}: "
            f"forget_coeff {run.forget_coeff}, prompt format {run.prompt_format}, "
            f"{run.accumulation} accumulation steps"
            + (f"; resuming from {resume_from}" if resume_from else "")
        )
    started = time.time()
    if evaluation and evaluation.stopped_at is not None:  # stopped at its target, then killed
        evaluation.reload_stopped_run(trainer, resume_from)
    else:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    if evaluation:
        evaluation.finish(trainer)
    trainer.save_model(str(output))
    if trainer.is_world_process_zero():
        run.tokenizer.save_pretrained(output)
        add_reader_compatibility(output)
        card = run_card(
            options, trainer, run.data, run.prompt_format, run.forget_coeff, time.time() - started
        )
        if evaluation:
            card.update(evaluation.card(trainer.state.global_step))
        from harness_ext.provenance import write_json_atomic

        write_json_atomic(output / RUN_CARD, card)
        if not options.keep_checkpoints:
            shutil.rmtree(output / CHECKPOINTS, ignore_errors=True)
        (output / RUN_SETTINGS).unlink(missing_ok=True)
    return output


def run_card(options, trainer, data, prompt_format, forget_coeff, seconds) -> dict[str, Any]:
    from harness_ext.provenance import git_commit, hardware, model_fingerprint, package_versions

    history = trainer.state.log_history
    steps = [h for h in history if "loss" in h]
    final = steps[-1] if steps else {}
    args = trainer.args
    return {
        "format": "lm-unlearn-run/1",
        "method": trainer.method.name,
        "forget_term": trainer.method.forget.name,
        "regularizer": trainer.method.regularizer.name if trainer.method.regularizer else None,
        "reference_model": trainer.method.needs_reference,
        "output": {
            "kind": "peft-adapter" if options.lora else "full",
            "base_model": options.model,
        },
        "base_model": model_fingerprint(options.model),
        "options": asdict(options),
        "hyperparameters": {
            "forget_coeff": forget_coeff,
            "reg_coeff": args.reg_coeff,
            "beta": args.beta,
            "gamma": args.gamma,
            "compat": args.compat,
            "learning_rate": args.learning_rate,
            "epochs": args.num_train_epochs,
            "max_steps": args.max_steps,
            "per_device_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "world_size": args.world_size,
            "effective_batch_size": args.per_device_train_batch_size
            * args.gradient_accumulation_steps
            * args.world_size,
            "warmup_steps": args.warmup_steps,
            "weight_decay": args.weight_decay,
            "lr_scheduler": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
            "bf16": args.bf16,
            "lora": {
                "r": options.lora_r,
                "alpha": options.lora_alpha,
                "dropout": options.lora_dropout,
                "target_modules": "all-linear",
            }
            if options.lora
            else None,
        },
        "data": {
            "forget_split": data.forget_split,
            "retain_split": data.retain_split,
            "forget_rows": len(data.forget),
            "retain_rows": len(data.retain),
            "refusals": len(data.refusals),
            "data_sha256": data.content_hash(),
            "pairing": options.pairing,
            "prompt_format": prompt_format,
            "max_length": options.max_length,
            "targets": options.targets,
        },
        "seed": args.seed,
        "losses": {
            "final": {k: v for k, v in final.items() if k == "loss" or k.startswith("loss/")},
            "per_step": [
                {
                    k: v
                    for k, v in h.items()
                    if k in ("step", "epoch", "loss", "learning_rate") or k.startswith("loss/")
                }
                for h in steps
            ],
        },
        "global_steps": trainer.state.global_step,
        "wall_seconds": round(seconds, 2),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "hardware": hardware(),
    }


def read_run_card(output: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(output) / RUN_CARD).read_text(encoding="utf-8"))
