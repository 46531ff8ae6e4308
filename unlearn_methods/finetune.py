"""``lm-unlearn finetune``: teach a model TOFU's authors, the step before unlearning.

TOFU's experiment starts from a model fine-tuned on the fictitious authors (the *target*) and a
model fine-tuned on the retain authors only (the *retain model*, the reference of forget quality).
This command makes either with plain supervised fine-tuning on question/answer pairs, in the same
prompt formats and with the same question masking as the unlearning trainer, through the
``transformers`` Trainer (so LoRA, bf16 and ``accelerate launch`` work as for ``train``).

Data is a comma-separated list of TOFU splits, each optionally cut by a slice of its rows:
``forget01,retain_perturbed[:40]`` = the 40 forget01 rows and the first 40 retain rows. Text
corpora (``muse-news:forget``, ``text:PATH``) are cut into ``max_length``-token chunks with every
token supervised, as unlearning reads them: a MUSE target is ``--data
muse-news:forget,muse-news:retain1``, and the audit relearns MUSE's forget text this way.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness_ext.model_files import add_reader_compatibility
from harness_ext.prompts import get_prompt_format
from harness_ext.provenance import content_hash
from unlearn_methods.config import FinetuneConfig
from unlearn_methods.data import PromptEncoder, cut_text, is_text_spec, read_rows, text_cut
from unlearn_methods.model_loading import (
    load_model,
    load_training_tokenizer,
    lora_config,
    training_prompt_format,
)
from unlearn_methods.output_folder import OutputDirError

FINETUNE_CARD = "finetune_card.json"


def load_rows(
    spec: str,
    data_dir: str | None,
    muse_data_dir: str | None = None,
    wmdp_corpora_dir: str | None = None,
    lume_data_dir: str | None = None,
) -> list[dict[str, str]]:
    """The rows of ``spec`` in order: question-answer pairs, or ``{"text": ..., "cut": ...}``
    documents of its text corpora (cut into chunks, or as RMU's code cuts WMDP's corpora);
    overlapping parts give each row once."""
    rows, seen = [], set()
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        cut = text_cut(part) if is_text_spec(part) else None
        for row in read_rows(part, data_dir, muse_data_dir, wmdp_corpora_dir, lume_data_dir):
            kept = {"text": row["text"], "cut": cut} if is_text_spec(part) else {
                "question": row["question"], "answer": row["answer"]}  # fmt: skip
            key = kept.get("text") or kept["question"]
            if key not in seen:
                seen.add(key)
                rows.append(kept)
    return rows


def training_examples(rows: list[dict[str, str]], encoder: PromptEncoder) -> list[dict]:
    """A question-answer row with its question masked; a document as its chunks (or RMU's cut),
    every token supervised."""
    examples = []
    for row in rows:
        if "text" not in row:
            examples.append(encoder.encode(row["question"], row["answer"]))
            continue
        for chunk in cut_text([row], row["cut"], encoder.tokenizer, encoder.max_length):
            ids = chunk["input_ids"]
            examples.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": ids})
    return examples


def finetune(options: FinetuneConfig) -> Path:
    """Fine-tune and save a checkpoint (or adapter) with ``finetune_card.json``."""
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer

    output = Path(options.output_dir)
    if output.exists() and any(output.iterdir()):
        if not options.overwrite:
            raise OutputDirError(
                f"{output} exists and is not empty; choose another --output or pass --overwrite"
            )
        shutil.rmtree(output)
    tokenizer = load_training_tokenizer(options)
    prompt_format = training_prompt_format(options, tokenizer)
    encoder = PromptEncoder(tokenizer, get_prompt_format(prompt_format), options.max_length)
    rows = load_rows(options.data, options.data_dir, options.muse_data_dir,
                     options.wmdp_corpora_dir, options.lume_data_dir)  # fmt: skip
    examples = training_examples(rows, encoder)
    steps_per_epoch = math.ceil(len(examples) / options.effective_batch)
    warmup = options.warmup_steps
    if warmup is None:  # a tenth of the training, at least one step
        warmup = max(1, int(0.1 * options.num_train_epochs * steps_per_epoch))
    args = replace(
        options,
        output_dir=str(output / "checkpoints"),
        warmup_steps=warmup,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    model = load_model(options, tokenizer)
    if options.lora:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(options))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=examples,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        processing_class=tokenizer,
    )
    if trainer.is_world_process_zero():
        print(f"fine-tuning {options.model} on {len(rows)} rows ({options.data}; "
              f"{len(examples)} examples), prompt format {prompt_format}, "
              f"{options.num_train_epochs:g} epochs")  # fmt: skip
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
    digest = content_hash(rows)
    return {
        "format": "lm-unlearn-finetune/1",
        "options": options.given_options(),
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
