"""GD: gradient descent on the retain answers, CE_θ(y_r | x_r)."""

from unlearn_methods.losses.registry import regularizer


@regularizer("GD", needs=("retain",), description="keep fitting the retain answers")
def gradient_descent(ctx):
    return ctx.policy("retain").mean_token_nll
