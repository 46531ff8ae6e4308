"""ME: maximise the predictive entropy on forget samples (the paper's untargeted method).

Paper form: mean over the real tokens of question + answer of KL(p_θ ‖ U) = log V − H(p_θ).
``compat="closer-look"``: KL(U ‖ p_θ) averaged over every position of the padded batch, as the
public code computes it.
"""

from unlearn_methods import functional as F
from unlearn_methods.registry import forget_term


@forget_term("ME", needs=("forget",), description="maximise predictive entropy on forget samples")
def maximise_entropy(ctx):
    forget = ctx.policy("forget")
    if ctx.settings.compat == "closer-look":
        return F.uniform_kl_reversed(forget.logits)
    return F.uniform_kl(forget.logits, forget.attention_mask)
