"""``lm-unlearn finetune``: teach a model TOFU's authors, the step before unlearning.

TOFU's experiment starts from a model fine-tuned on the fictitious authors (the *target*) and a
model fine-tuned on the retain authors only (the *retain model*, the reference of forget quality).
This command makes either with plain supervised fine-tuning on question/answer pairs, in the same
prompt formats and with the same question masking as the unlearning trainer, through the
``transformers`` Trainer (so LoRA, bf16 and ``accelerate launch`` work as for ``train``).

Data is a comma-separated list of TOFU splits, each optionally cut by a slice of its rows:
``forget01,retain_perturbed[:40]`` = the 40 forget01 rows and the first 40 retain rows.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness_ext.model_files import add_reader_compatibility
from tofu_tasks import data as tofu_data
from tofu_tasks.prompts import get_prompt_format
from unlearn_methods.data import PromptEncoder, read_rows
from unlearn_methods.train import (
    OutputDirError,
    TrainOptions,
    load_model,
    load_training_tokenizer,
    lora_config,
    training_prompt_format,
    use_bf16,
    world_size,
)

FINETUNE_CARD = "finetune_card.json"


@dataclass
class FinetuneOptions:
    model: str
    output: str
    data: str = "full"
    epochs: float = 5.0
    learning_rate: float = 1e-5
    weight_decay: float = 0.01
    per_device_batch_size: int = 4
    effective_batch_size: int = 32
    max_length: int = 500
    prompt_format: str | None = None
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    seed: int = 42
    bf16: bool | None = None
    dtype: str | None = None
    data_dir: str | None = None
    pad_token: str | None = None
    overwrite: bool = False
    training_args: dict[str, Any] = field(default_factory=dict)  # any TrainingArguments field


def load_rows(spec: str, data_dir: str | None) -> list[dict[str, str]]:
    rows, seen = [], set()
    for row in read_rows(spec, data_dir):
        if row["question"] not in seen:  # overlapping splits teach each row once
            seen.add(row["question"])
            rows.append({"question": row["question"], "answer": row["answer"]})
    return rows


def finetune(options: FinetuneOptions) -> Path:
    """Fine-tune and save a checkpoint (or adapter) with ``finetune_card.json``."""
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    output = Path(options.output)
    if output.exists() and any(output.iterdir()):
        if not options.overwrite:
            raise OutputDirError(
                f"{output} exists and is not empty; choose another --output or pass --overwrite"
            )
        shutil.rmtree(output)
    shared = TrainOptions(method="GA", model=options.model, output=options.output,
                          pad_token=options.pad_token, prompt_format=options.prompt_format,
                          dtype=options.dtype, bf16=options.bf16, lora=options.lora,
                          lora_r=options.lora_r, lora_alpha=options.lora_alpha,
                          lora_dropout=options.lora_dropout)  # fmt: skip
    tokenizer = load_training_tokenizer(shared)
    prompt_format = training_prompt_format(shared, tokenizer)
    encoder = PromptEncoder(tokenizer, get_prompt_format(prompt_format), options.max_length)
    rows = load_rows(options.data, options.data_dir)
    examples = [encoder.encode(r["question"], r["answer"]) for r in rows]
    bf16 = use_bf16(shared)
    per_step = options.per_device_batch_size * world_size()
    accumulation = max(1, math.ceil(options.effective_batch_size / per_step))
    derived = dict(
        output_dir=str(output / "checkpoints"),
        num_train_epochs=options.epochs,
        learning_rate=options.learning_rate,
        weight_decay=options.weight_decay,
        per_device_train_batch_size=options.per_device_batch_size,
        gradient_accumulation_steps=accumulation,
        lr_scheduler_type="linear",
        warmup_steps=max(
            1, int(0.1 * options.epochs * math.ceil(len(examples) / (per_step * accumulation)))
        ),
        bf16=bf16,
        seed=options.seed,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    args = TrainingArguments(**{**derived, **options.training_args})
    model = load_model(shared, bf16, tokenizer)
    if options.lora:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(shared))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=examples,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        processing_class=tokenizer,
    )
    if trainer.is_world_process_zero():
        print(f"fine-tuning {options.model} on {len(rows)} rows ({options.data}), prompt format "
              f"{prompt_format}, {options.epochs:g} epochs")  # fmt: skip
    started = time.time()
    trainer.train()
    trainer.save_model(str(output))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(output)
        add_reader_compatibility(output)
        shutil.rmtree(output / "checkpoints", ignore_errors=True)
        card = finetune_card(options, trainer, rows, prompt_format, time.time() - started)
        from harness_ext.provenance import write_json_atomic

        write_json_atomic(output / FINETUNE_CARD, card)
    return output


def finetune_card(options, trainer, rows, prompt_format, seconds) -> dict[str, Any]:
    from harness_ext.provenance import git_commit, hardware, model_fingerprint, package_versions

    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    digest = tofu_data.content_hash(rows)
    return {
        "format": "lm-unlearn-finetune/1",
        "options": asdict(options),
        "base_model": model_fingerprint(options.model),
        "rows": len(rows),
        "data_sha256": digest,
        "prompt_format": prompt_format,
        "losses": {"first": losses[0] if losses else None, "final": losses[-1] if losses else None},
        "global_steps": trainer.state.global_step,
        "wall_seconds": round(seconds, 2),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "hardware": hardware(),
    }


def read_finetune_card(output: str | Path) -> dict[str, Any]:
    return json.loads((Path(output) / FINETUNE_CARD).read_text(encoding="utf-8"))
