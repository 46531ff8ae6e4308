"""KL: stay close to the model before unlearning on retain data, KL(p_ref ‖ p_θ).

Paper form: mean over the retain answer tokens. ``compat="closer-look"``: every position of the
padded batch (question and padding too), as the public code computes it.
"""

import torch

from unlearn_methods import functional as F
from unlearn_methods.registry import regularizer


@regularizer(
    "KL",
    needs=("retain",),
    reference_needs=("retain",),
    description="KL to the original model on retain data",
)
def stay_close(ctx):
    policy_logits, mask = ctx.policy("retain").shifted
    reference_logits, _ = ctx.reference("retain").shifted
    if ctx.settings.compat == "closer-look":
        mask = torch.ones_like(mask)
    return F.kl_to_reference(policy_logits, reference_logits, mask)
