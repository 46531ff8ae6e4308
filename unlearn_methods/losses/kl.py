"""KL: stay close to the model before unlearning on retain data, KL(p_ref ‖ p_θ).

Paper form: mean over the positions that predict the retain answer's tokens.
``compat="closer-look"``: every position of the padded batch (question and padding too, unshifted)
in the model's dtype, as the public code computes it.
"""

from unlearn_methods.losses import functional as F
from unlearn_methods.losses.registry import regularizer


@regularizer(
    "KL",
    needs=("retain",),
    reference_needs=("retain",),
    description="KL to the original model on retain data",
)
def stay_close(ctx):
    if ctx.settings.compat == "closer-look":
        return F.kl_to_reference_code(ctx.policy("retain").logits, ctx.reference("retain").logits)
    policy_logits, mask = ctx.policy("retain").shifted
    reference_logits, _ = ctx.reference("retain").shifted
    return F.kl_to_reference(policy_logits, reference_logits, mask)
