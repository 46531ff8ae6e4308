"""What the processes of a multi-process run (``accelerate launch``, torchrun) agree on."""

from __future__ import annotations

from typing import Any


def from_main_process(value: Any) -> Any:
    """Rank 0's value on every rank (the value itself when one process runs); the other ranks
    wait here until rank 0 has it."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    shared = [value]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]
