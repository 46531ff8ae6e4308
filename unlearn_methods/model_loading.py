"""Loading what a training run trains: the tokenizer (checked, padded as asked), the prompt
format it trains in (the scoring rule, so a model is scored the way it was trained), the model
(an adapter folder as its base with the adapter applied or kept trainable) and LoRA."""

from __future__ import annotations

import json
from pathlib import Path

from harness_ext.prompts import choose_prompt_format, get_prompt_format
from unlearn_methods.config import (
    TrainingConfig,
)
from unlearn_methods.data import (
    check_tokenizer,
)


def load_training_tokenizer(options: TrainingConfig):
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


def training_prompt_format(options: TrainingConfig, tokenizer=None) -> str:
    """The prompt format the run trains in, by the rule scoring follows (so a model is scored
    the way it was trained): as asked, else LUME's for LUME's rows (the input as it is, as its
    task asks), else TOFU's legacy format for its checkpoints and their descendants, else the
    tokenizer's chat template, else plain. The tokenizer is loaded only when the choice comes to
    it and none is given."""
    from unlearn_methods.data import LUME_PREFIX

    data = str(getattr(options, "forget", None) or getattr(options, "data", None) or "")
    if options.prompt_format is None and data.startswith(LUME_PREFIX):
        return "lume"
    name, _ = choose_prompt_format(
        options.prompt_format,
        options.model,
        lambda: bool(getattr(tokenizer or load_training_tokenizer(options), "chat_template", None)),
    )
    return get_prompt_format(name).name


def adapter_base(model: str) -> str | None:
    """The base model of a PEFT adapter folder (None for anything else)."""
    config = Path(model).expanduser() / "adapter_config.json"
    if not config.is_file():
        return None
    base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{config} names no base model (base_model_name_or_path)")
    return base


def load_model(options: TrainingConfig, tokenizer, *, trainable_adapter: bool = False):
    """The model to unlearn from. An adapter folder (a LoRA run, e.g. the previous request of a
    continual run) is its base with the adapter applied: merged into the weights, or, with
    ``trainable_adapter``, kept as the PEFT adapter that training continues."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = (
        getattr(torch, options.dtype)
        if options.dtype
        else (torch.bfloat16 if options.bf16 else torch.float32)
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


def lora_config(options: TrainingConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules="all-linear",  # every linear layer except the output head
        task_type="CAUSAL_LM",
    )


def train_only_down_projections(model, layers: list[int]) -> list[str]:
    """Freeze every weight but the MLP down-projections of the given decoder layers (RMU's
    code updates those alone); returns the names of the weights left trainable."""
    import re

    kept, found = [], set()
    for name, parameter in model.named_parameters():
        match = re.search(r"(?:^|\.)layers\.(\d+)\.mlp\.down_proj\.", name)
        train = match is not None and int(match[1]) in layers
        parameter.requires_grad_(train)
        if train:
            kept.append(name)
            found.add(int(match[1]))
    missing = sorted(set(layers) - found)
    if missing:
        count = getattr(model.config, "num_hidden_layers", "?")
        raise ValueError(
            f"--rmu-update-layers: no layers.N.mlp.down_proj weight for layer(s) "
            f"{', '.join(map(str, missing))} (the model has {count} decoder layers, counted "
            f"from 0)"
        )
    return kept
