"""DPO: prefer the refusal over the forget answer, relative to the model before unlearning."""

from unlearn_methods.losses import functional as F
from unlearn_methods.losses.registry import forget_term


@forget_term(
    "DPO",
    needs=("forget", "forget_idk"),
    reference_needs=("forget", "forget_idk"),
    description="prefer a refusal over the forget answer (DPO)",
)
def prefer_refusal(ctx):
    return F.dpo_loss(
        ctx.policy("forget_idk").summed_nll,
        ctx.policy("forget").summed_nll,
        ctx.reference("forget_idk").summed_nll,
        ctx.reference("forget").summed_nll,
        ctx.settings.beta,
    )
