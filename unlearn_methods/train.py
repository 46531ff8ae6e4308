"""``lm-unlearn train``: unlearn a TOFU forget split and write a checkpoint with its run card.

The output folder holds a normal Hugging Face checkpoint (or a PEFT adapter with ``--lora``), the
tokenizer, and ``run_card.json`` (method, hyper-parameters, data hash, seed, versions, git commit,
per-step and final losses). Intermediate checkpoints go to ``checkpoints/`` and are removed when
the run finishes; running the same command again after an interruption resumes from the last one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness_ext.model_files import add_reader_compatibility
from harness_ext.prompts import get_prompt_format
from unlearn_methods.config import (
    UnlearnConfig,
    default_forget_coeff,
    world_size,
)
from unlearn_methods.data import (
    PromptEncoder,
    UnlearnCollator,
    UnlearnDataset,
    check_method_data,
    is_text_spec,
    load_unlearn_data,
)
from unlearn_methods.distributed import from_main_process
from unlearn_methods.methods import resolve_method
from unlearn_methods.model_loading import (
    adapter_base,
    load_model,
    load_training_tokenizer,
    lora_config,
    training_prompt_format,
)
from unlearn_methods.output_folder import (
    CHECKPOINTS,
    RUN_CARD,
    RUN_SETTINGS,
    check_same_run,
    is_main_process,
    output_lock,
    prepare_output,
)


def paper_schedule(forget_rows: int, epochs: float, effective_batch: int) -> tuple[int, int]:
    """(optimiser steps, warm-up steps) counted as the paper's runs count them:
    floor(epochs · |forget| / batch) steps, and one epoch of floor(|forget| / batch) warm-up
    steps when that is more than one step. The count is the project's own, so it does not
    change with the transformers version (forget01/05/10 at batch 32, 5 epochs: 6/31/62 steps,
    0/6/12 warm-up)."""
    steps = max(1, int(epochs * forget_rows) // effective_batch)
    per_epoch = forget_rows // effective_batch
    return steps, per_epoch if per_epoch > 1 else 0


def resolve_forget_coeff(options: UnlearnConfig, forget_term: str) -> float:
    if options.forget_coeff is not None:
        return options.forget_coeff
    return default_forget_coeff(forget_term, options.scenario)


def resolved_run(options: UnlearnConfig, data, prompt_format: str) -> dict[str, Any]:
    """The run as it will train: what ``--dry-run`` prints and the run card records."""
    method = resolve_method(options.method)
    effective = options.effective_batch
    epochs = options.num_train_epochs
    max_steps, warmup = paper_schedule(len(data.forget), epochs, effective)
    if options.max_steps > 0:  # a step budget of the user's: warm up for one epoch's share of
        max_steps = options.max_steps  # it, as the paper's schedule does
        share = int(max_steps / max(epochs, 1.0))
        warmup = share if share > 1 else 0
    if options.warmup_steps is not None:
        warmup = options.warmup_steps
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
        "per_device_batch_size": options.per_device_train_batch_size,
        "gradient_accumulation_steps": options.gradient_accumulation_steps,
        "world_size": world_size(),
        "learning_rate": options.learning_rate,
        "lr_scheduler_type": str(
            getattr(options.lr_scheduler_type, "value", options.lr_scheduler_type)
        ),
        "weight_decay": options.weight_decay,
        "options": options.given_options(),
        "pairing": options.pairing,
        "seed": options.seed,
        "forget_split": data.forget_split,
        "retain_split": data.retain_split,
        "forget_rows": len(data.forget),
        "retain_rows": len(data.retain),
        "refusals": len(data.refusals),
        "bf16": options.bf16,
        "output": options.output_dir,
        **evaluation_settings(options, prompt_format),
    }


def evaluation_settings(options: UnlearnConfig, prompt_format: str) -> dict[str, Any]:
    """``{"evaluation": plan}`` of a run that evaluates during training, else nothing (so the
    settings of runs without it stay as they were)."""
    from unlearn_methods.evaluation_plan import plan_evaluation

    plan = plan_evaluation(options, prompt_format)
    return {"evaluation": plan.settings()} if plan else {}


def training_data(options: UnlearnConfig, tokenizer=None):
    """The run's forget and retain examples, checked against the method (a text corpus is
    chunked by the tokenizer, loaded here only then)."""
    method = resolve_method(options.method)
    texts = is_text_spec(options.forget) or bool(options.retain and is_text_spec(options.retain))
    if texts and tokenizer is None:
        tokenizer = load_training_tokenizer(options)
    data = load_unlearn_data(
        options.forget, options.retain, options.data_dir, options.targets,
        tokenizer=tokenizer, max_length=options.max_length, muse_data_dir=options.muse_data_dir,
        wmdp_corpora_dir=options.wmdp_corpora_dir, lume_data_dir=options.lume_data_dir,
    )  # fmt: skip
    check_method_data(method.needs, data, method.name)
    return data


def dry_run(options: UnlearnConfig) -> dict[str, Any]:
    """The resolved run, without loading the model or touching the output folder."""
    data = training_data(options)
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


def build_run(options: UnlearnConfig, callbacks: list | None = None) -> PreparedRun:
    """Load tokenizer, data and model and build the trainer (``train`` runs it)."""
    import torch

    method = resolve_method(options.method)  # fail fast on an unknown name
    output = Path(options.output_dir)
    tokenizer = load_training_tokenizer(options)
    prompt_format = training_prompt_format(options, tokenizer)
    data = training_data(options, tokenizer)
    encoder = PromptEncoder(tokenizer, get_prompt_format(prompt_format), options.max_length)
    dataset = UnlearnDataset(data, encoder, method.needs, options.pairing, options.seed)
    pad_to = options.max_length if options.compat == "closer-look" else None
    collator = UnlearnCollator(tokenizer.pad_token_id, method.needs, pad_to)

    resolved = resolved_run(options, data, prompt_format)
    forget_coeff = resolved["forget_coeff"]
    # the trainer's copy: what lm-unlearn counts from the data (the paper's schedule) filled in
    args = replace(
        options,
        output_dir=str(output / CHECKPOINTS),
        method=method.name,
        forget_coeff=forget_coeff,
        max_steps=resolved["max_steps"],
        warmup_steps=resolved["warmup_steps"],
        dataloader_pin_memory=torch.cuda.is_available(),
        # RMU reads a middle layer only, leaving the top of the network unused on forget text.
        ddp_find_unused_parameters=method.uses_hidden_states,
        data_seed=options.seed if options.data_seed is None else options.data_seed,
    )
    # LoRA from an adapter (a continual run's previous request): training continues that adapter,
    # and the reference is the model it gives (base + adapter), not the bare base.
    continue_adapter = options.lora and adapter_base(options.model) is not None
    model = load_model(options, tokenizer, trainable_adapter=continue_adapter)
    if options.rmu_update_layers is not None:
        from unlearn_methods.model_loading import train_only_down_projections

        train_only_down_projections(model, options.update_layer_ids())
    reference = None
    if continue_adapter and method.needs_reference:
        reference = load_model(options, tokenizer)
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
    return PreparedRun(
        trainer, tokenizer, data, prompt_format, forget_coeff, args.gradient_accumulation_steps
    )


def train(options: UnlearnConfig) -> Path:
    """Run one unlearning job; returns the output folder."""
    resolve_method(options.method)  # fail fast on an unknown name, before touching the folder
    output = Path(options.output_dir)
    settings = dry_run(options)  # data, tokenizer and options checked before anything is written
    with output_lock(output):
        return _train(options, output, settings)


def _train(options: UnlearnConfig, output: Path, settings: dict[str, Any]) -> Path:
    # Only rank 0 reads and tidies the folder (the other ranks would see its files half-written);
    # they learn the checkpoint to resume from once the process group exists.
    resume_from = None
    if is_main_process():
        resume_from = prepare_output(output, options.overwrite)
        check_same_run(output, settings, resuming=resume_from is not None)
    from unlearn_methods.evaluation import EvaluateDuringTraining
    from unlearn_methods.evaluation_plan import plan_evaluation
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
        "options": options.given_options(),
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
