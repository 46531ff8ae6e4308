"""SimNPO: reference-free, length-normalised NPO with margin γ."""

from unlearn_methods.losses import functional as F
from unlearn_methods.losses.registry import forget_term


@forget_term("SimNPO", needs=("forget",), description="reference-free length-normalised NPO")
def simple_npo(ctx):
    forget = ctx.policy("forget")
    return F.simnpo_loss(
        forget.summed_nll, forget.token_counts, ctx.settings.beta, ctx.settings.gamma
    )
