"""The inputs of batched forward passes of the ``hf-unlearn`` backend: rows padded to one
tensor, their position ids, the key/value cache a model returns, and whether a (prompt-tuning)
adapter adds virtual tokens that would shift positions."""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger("lm-unlearn")


def returned_cache(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def pad_rows(
    sequences: list[list[int]], pad: int, side: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of the sequences padded to the longest one on ``side``."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        if not sequence:
            continue
        span = slice(width - len(sequence), width) if side == "left" else slice(0, len(sequence))
        ids[row, span] = torch.tensor(sequence, dtype=torch.long)
        mask[row, span] = 1
    return ids.to(device), mask.to(device)


def position_ids_of(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of left-padded rows, as transformers' generate computes them."""
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)


def has_virtual_tokens(model) -> bool:
    """Prompt/prefix-tuning adapters prepend tokens the cache bookkeeping here does not know."""
    configs = getattr(model, "peft_config", None) or {}
    return any(getattr(c, "is_prompt_learning", False) for c in configs.values())
