"""AP: answer preservation (the paper's targeted regulariser).

Prefers the true retain answer over a refusal on the same retain question; no reference model.
"""

from unlearn_methods.losses import functional as F
from unlearn_methods.losses.registry import regularizer


@regularizer(
    "AP", needs=("retain", "retain_idk"), description="prefer retain answers over refusals"
)
def preserve_answers(ctx):
    return F.answer_preservation_loss(
        ctx.policy("retain_idk").summed_nll, ctx.policy("retain").summed_nll, ctx.settings.beta
    )
