"""ME: maximise the predictive entropy on forget samples (the paper's untargeted method).

Paper form: mean of KL(p_θ ‖ U) = log V − H(p_θ) over the positions that predict the forget
answer's tokens and its EOS (the supervised positions of the training labels).
``compat="closer-look"``: the public code's KL(U ‖ p_θ) with its 1e-12 inside the log, in the
model's dtype, over every predicting position of the padded sequence (question and padding too:
its ME+GD runs used no question mask).
"""

import torch

from unlearn_methods.losses import functional as F
from unlearn_methods.losses.registry import forget_term


@forget_term("ME", needs=("forget",), description="maximise predictive entropy on forget samples")
def maximise_entropy(ctx):
    forget = ctx.policy("forget")
    logits, mask = forget.shifted
    if ctx.settings.compat == "closer-look":
        return F.uniform_kl_reversed(logits, torch.ones_like(mask))
    return F.uniform_kl(logits, mask)
