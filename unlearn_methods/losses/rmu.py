"""RMU (beyond the paper; Li et al. 2024, WMDP): representation misdirection.

Steers a middle layer's activations on forget text towards a fixed random direction of norm c,
and keeps the activations on retain text where the model before unlearning had them:
mean ‖h_θ(x_f) − c·u‖² + α · mean ‖h_θ(x_r) − h_ref(x_r)‖² over real tokens (RMU's code also
averages over padding positions). The layer is a decoder layer's output, counted from 0 as RMU's
``layer_id`` (``hidden_states[layer + 1]``); u is uniform in [0, 1)^d, normalised, as RMU draws
it.
"""

import torch

from unlearn_methods.losses.registry import forget_term

_DIRECTIONS: dict[tuple[int, str, str], torch.Tensor] = {}


def steering_direction(size: int, device, dtype) -> torch.Tensor:
    """A fixed random unit vector (seeded, so every run and every process steers the same way)."""
    key = (size, str(device), str(dtype))
    if key not in _DIRECTIONS:
        generator = torch.Generator().manual_seed(1001)
        u = torch.rand(size, generator=generator)
        _DIRECTIONS[key] = (u / u.norm()).to(device=device, dtype=dtype)
    return _DIRECTIONS[key]


def steered_index(layer: int | None, states: int) -> int:
    """The hidden-states index of the steered layer (default: the middle of the network)."""
    if layer is None:
        return states // 2
    if not 0 <= layer < states - 1:
        raise ValueError(
            f"--rmu-layer {layer}: the model has {states - 1} decoder layers (0-{states - 2})"
        )
    return layer + 1


def masked_mse(hidden: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    per_token = ((hidden.float() - target.float()) ** 2).mean(-1)
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


@forget_term(
    "RMU",
    needs=("forget", "retain"),
    reference_needs=("retain",),
    description="steer middle-layer activations on forget text to a random direction",
    hidden_states=True,
)
def misdirect(ctx):
    settings = ctx.settings
    forget, retain = ctx.policy("forget"), ctx.policy("retain")
    # hidden_states[0] is the embeddings: decoder layer L's output is hidden_states[L + 1]
    layer = steered_index(settings.rmu_layer, len(forget.hidden_states))
    h_forget = forget.hidden_states[layer]
    target = settings.rmu_steering * steering_direction(
        h_forget.shape[-1], h_forget.device, h_forget.dtype
    )
    steer = masked_mse(h_forget, target.expand_as(h_forget), forget.attention_mask)
    keep = masked_mse(
        retain.hidden_states[layer],
        ctx.reference("retain").hidden_states[layer],
        retain.attention_mask,
    )
    return steer + settings.rmu_alpha * keep
