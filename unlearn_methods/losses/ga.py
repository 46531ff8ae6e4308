"""GA: gradient ascent on the forget answers, −CE_θ(y_f | x_f)."""

from unlearn_methods.losses.registry import forget_term


@forget_term("GA", needs=("forget",), description="gradient ascent on the forget answers")
def gradient_ascent(ctx):
    return -ctx.policy("forget").mean_token_nll
