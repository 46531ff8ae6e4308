"""Checks of model folders before a model is loaded: clear errors instead of loader tracebacks.

* A ``.safetensors`` file cut short (an interrupted download or copy) is found from its header,
  which states where every tensor ends.
* A PEFT adapter on a base of another family (or size) is found by comparing the adapter's
  LoRA matrices with the base's layers, built on the meta device (no weights are read).

And one fix of model folders after they are written: :func:`add_reader_compatibility`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any


class ModelFileError(ValueError):
    """A model folder that cannot be used as it is."""


def safetensors_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            raise ModelFileError(f"{path} is truncated: {len(raw)} bytes, not even a header")
        (length,) = struct.unpack("<Q", raw)
        header = handle.read(length)
    if len(header) < length:
        raise ModelFileError(f"{path} is truncated inside its header; save or download it again")
    try:
        return json.loads(header)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{path} is not a safetensors file (its header: {err})") from err


def check_safetensors(folder: str | Path) -> None:
    """Every safetensors file of a folder holds all the bytes its header promises."""
    for path in sorted(Path(folder).glob("*.safetensors")):
        header = safetensors_header(path)
        with open(path, "rb") as handle:
            start = 8 + struct.unpack("<Q", handle.read(8))[0]
        ends = [
            entry["data_offsets"][1]
            for name, entry in header.items()
            if name != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry
        ]
        needed, present = start + max(ends, default=0), path.stat().st_size
        if present < needed:
            raise ModelFileError(
                f"{path} is truncated: its header promises {needed:,} bytes, the file holds "
                f"{present:,}; save or download it again"
            )


def check_adapter_fits(adapter: str | Path, base: str) -> None:
    """The adapter's LoRA matrices match the base model's layers (names and sizes)."""
    adapter = Path(adapter)
    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        return  # a .bin adapter or another PEFT method: left to peft
    check_safetensors(adapter)
    modules = _base_linear_shapes(base)
    if modules is None:
        return  # the base's config cannot be read here (a hub model offline)
    for name, entry in safetensors_header(weights).items():
        if name == "__metadata__" or ".lora_" not in name:
            continue
        module = name.removeprefix("base_model.model.").split(".lora_")[0]
        shape = entry.get("shape", [])
        if module not in modules:
            raise ModelFileError(
                f"the adapter {adapter} does not fit the base model {base}: the base has no layer "
                f"{module!r}; was the adapter trained on another model? (pass --base)"
            )
        in_features, out_features = modules[module]
        wanted = in_features if ".lora_A." in name else out_features
        size = shape[1] if ".lora_A." in name else shape[0]
        if len(shape) == 2 and size != wanted:
            raise ModelFileError(
                f"the adapter {adapter} does not fit the base model {base}: layer {module!r} "
                f"has {wanted} features in the base but {size} in the adapter; was the adapter "
                f"trained on another model? (pass --base)"
            )


def _base_linear_shapes(base: str) -> dict[str, tuple[int, int]] | None:
    """(in, out) features of every linear layer of the base, built on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(base)
    except (OSError, ValueError):
        return None
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {
        name: (module.in_features, module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }


# transformers 5 names its fast tokenizers' class "TokenizersBackend"; 4.x knows the same class,
# which reads tokenizer.json, as PreTrainedTokenizerFast (and 5.x reads that name too).
OLD_TOKENIZER_CLASSES = {"TokenizersBackend": "PreTrainedTokenizerFast"}


def add_reader_compatibility(folder: str | Path) -> None:
    """Keys older transformers releases need to load a checkpoint as the same model.

    transformers 5.x writes the RoPE settings only under ``rope_parameters``; 4.x ignores that
    key and falls back to its defaults (Llama's base 10000: another model, silently). The
    top-level ``rope_theta`` and ``rope_scaling`` 4.x reads are added beside it, and a tokenizer
    class 4.x does not know is renamed to the one it does. Files without those keys are left as
    they are."""
    folder = Path(folder)
    _edit_json(folder / "config.json", _with_top_level_rope)
    _edit_json(folder / "tokenizer_config.json", _with_old_tokenizer_class)


def _edit_json(path: Path, edit) -> None:
    if not path.is_file():
        return
    content = json.loads(path.read_text(encoding="utf-8"))
    changed = edit(dict(content))
    if changed != content:
        from harness_ext.provenance import write_json_atomic

        write_json_atomic(path, changed)


def _with_top_level_rope(config: dict[str, Any]) -> dict[str, Any]:
    rope = config.get("rope_parameters")
    for sub in ("text_config",):  # multimodal configs nest the language model's
        if isinstance(config.get(sub), dict):
            config[sub] = _with_top_level_rope(dict(config[sub]))
    if not isinstance(rope, dict) or "rope_theta" not in rope or "rope_theta" in config:
        return config  # per-layer-type RoPE settings, or already there: nothing to mirror
    config["rope_theta"] = rope["rope_theta"]
    scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
    config["rope_scaling"] = None if scaling.get("rope_type", "default") == "default" else scaling
    return config


def _with_old_tokenizer_class(config: dict[str, Any]) -> dict[str, Any]:
    name = config.get("tokenizer_class")
    if name in OLD_TOKENIZER_CLASSES:
        config["tokenizer_class"] = OLD_TOKENIZER_CLASSES[name]
    return config
