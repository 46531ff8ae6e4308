"""NPO: negative preference optimisation against the model before unlearning."""

from unlearn_methods.losses import functional as F
from unlearn_methods.losses.registry import forget_term


@forget_term(
    "NPO",
    needs=("forget",),
    reference_needs=("forget",),
    description="negative preference optimisation",
)
def negative_preference(ctx):
    return F.npo_loss(
        ctx.policy("forget").summed_nll, ctx.reference("forget").summed_nll, ctx.settings.beta
    )
