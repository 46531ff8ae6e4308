"""IDK: fine-tune the forget questions towards a refusal, CE_θ(idk | x_f)."""

from unlearn_methods.losses.registry import forget_term


@forget_term("IDK", needs=("forget_idk",), description="answer forget questions with a refusal")
def refuse(ctx):
    return ctx.policy("forget_idk").mean_token_nll
