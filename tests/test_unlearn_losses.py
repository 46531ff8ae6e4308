"""Every loss term against values computed by hand on tiny tensors."""

import math

import pytest
import torch

from unlearn_methods.losses import functional as F
from unlearn_methods.losses.context import LossContext, TermSettings
from unlearn_methods.losses.registry import FORGET_TERMS, REGULARIZERS, UnknownMethodError
from unlearn_methods.methods import resolve_method

LN3 = math.log(3)


def two_token_logits():
    """V = 2; position 0 gives p = (1/4, 3/4), position 1 gives p = (3/4, 1/4)."""
    return torch.tensor([[[0.0, LN3], [LN3, 0.0], [0.0, 0.0]]])


LABELS = torch.tensor([[-100, 1, 0]])  # targets after the shift: token 1, then token 0


def log_sigmoid(x):
    return math.log(1 / (1 + math.exp(-x)))


def test_nll_helpers_by_hand():
    logits = two_token_logits()
    # both supervised targets have probability 3/4
    assert F.summed_nll(logits, LABELS).item() == pytest.approx(2 * math.log(4 / 3), rel=1e-6)
    assert F.token_counts(LABELS).tolist() == [2]
    assert F.mean_token_nll(logits, LABELS).item() == pytest.approx(math.log(4 / 3), rel=1e-6)


def test_npo_simnpo_dpo_ap_by_hand():
    t = torch.tensor
    assert F.npo_loss(t([1.0]), t([0.5]), 0.1).item() == pytest.approx(
        -20 * log_sigmoid(0.05), rel=1e-6
    )
    assert F.simnpo_loss(t([2.0]), t([4]), 0.1, 0.0).item() == pytest.approx(
        -20 * log_sigmoid(0.05), rel=1e-6
    )
    assert F.simnpo_loss(t([2.0]), t([4]), 0.1, 1.0).item() == pytest.approx(
        -20 * log_sigmoid(-0.95), rel=1e-6
    )
    # preferred = refusal (NLL 1), rejected = forget answer (NLL 3); reference indifferent
    dpo = F.dpo_loss(t([1.0]), t([3.0]), t([2.0]), t([2.0]), 0.1).item()
    assert dpo == pytest.approx(-20 * log_sigmoid(0.2), rel=1e-6)
    assert F.answer_preservation_loss(t([3.0]), t([1.0]), 0.1).item() == pytest.approx(
        -10 * log_sigmoid(0.2), rel=1e-6
    )


def test_entropy_terms_by_hand():
    logits = torch.tensor([[[0.0, LN3]]])  # p = (1/4, 3/4)
    mask = torch.ones(1, 1)
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert F.uniform_kl(logits, mask).item() == pytest.approx(math.log(2) - entropy, rel=1e-6)
    assert F.predictive_entropy(logits, mask).item() == pytest.approx(entropy, rel=1e-6)
    # KL(U || p) = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75)
    assert F.uniform_kl_reversed(logits).item() == pytest.approx(
        0.5 * math.log(2) + 0.5 * math.log(2 / 3), rel=1e-6
    )
    assert F.uniform_kl(torch.zeros(1, 3, 5), torch.ones(1, 3)).item() == pytest.approx(
        0.0, abs=1e-7
    )


def test_kl_to_reference_by_hand_and_mask():
    policy = torch.tensor([[[0.0, LN3], [0.0, 0.0]]])  # (1/4, 3/4) then uniform
    reference = torch.tensor([[[LN3, 0.0], [0.0, 0.0]]])  # (3/4, 1/4) then uniform
    expected = 0.75 * math.log(3) + 0.25 * math.log(1 / 3)
    assert F.kl_to_reference(policy, reference, torch.tensor([[1, 0]])).item() == pytest.approx(
        expected, rel=1e-6
    )
    assert F.kl_to_reference(policy, reference, torch.tensor([[1, 1]])).item() == pytest.approx(
        expected / 2, rel=1e-6
    )


def batch_of(**sets):
    batch = {}
    for name, (logits, labels) in sets.items():
        batch[f"{name}_input_ids"] = torch.zeros_like(labels)
        batch[f"{name}_attention_mask"] = torch.ones_like(labels)
        batch[f"{name}_labels"] = labels
        batch[f"_logits_{name}"] = logits
    return batch


def context_for(batch, reference_scale=None, settings=None):
    """A LossContext whose 'model' returns fixed logits per example set (looked up by identity)."""

    def lookup(input_ids, attention_mask):
        for key, value in batch.items():
            if key.endswith("_input_ids") and value is input_ids:
                return batch["_logits_" + key.removesuffix("_input_ids")], None
        raise KeyError("unknown input")

    reference = None
    if reference_scale is not None:

        def reference(input_ids, attention_mask):
            logits, _ = lookup(input_ids, attention_mask)
            return logits * reference_scale, None

    return LossContext(batch, lookup, reference, settings or TermSettings())


def test_terms_read_the_right_example_sets():
    logits = two_token_logits()
    uniform = torch.zeros(1, 3, 2)
    batch = batch_of(
        forget=(logits, LABELS),
        retain=(uniform, LABELS),
        forget_idk=(uniform, LABELS),
        retain_idk=(logits, LABELS),
    )
    ctx = context_for(batch)
    ce_logits, ce_uniform = math.log(4 / 3), math.log(2)
    assert FORGET_TERMS["GA"](ctx).item() == pytest.approx(-ce_logits, rel=1e-6)
    assert FORGET_TERMS["IDK"](ctx).item() == pytest.approx(ce_uniform, rel=1e-6)
    assert REGULARIZERS["GD"](ctx).item() == pytest.approx(ce_uniform, rel=1e-6)
    # AP: refusal on retain = logits (NLL 2 ln 4/3), answer on retain = uniform (NLL 2 ln 2)
    ap = -10 * log_sigmoid(0.1 * (2 * ce_logits - 2 * ce_uniform))
    assert REGULARIZERS["AP"](ctx).item() == pytest.approx(ap, rel=1e-6)


def test_reference_terms_against_a_reference_equal_to_the_policy():
    logits = two_token_logits()
    batch = batch_of(forget=(logits, LABELS), retain=(logits, LABELS), forget_idk=(logits, LABELS))
    ctx = context_for(batch, reference_scale=1.0)
    # policy == reference: NPO = -(2/β) log σ(0) = (2/β) ln 2, KL = 0, DPO = (2/β) ln 2
    assert FORGET_TERMS["NPO"](ctx).item() == pytest.approx(20 * math.log(2), rel=1e-6)
    assert FORGET_TERMS["DPO"](ctx).item() == pytest.approx(20 * math.log(2), rel=1e-6)
    assert REGULARIZERS["KL"](ctx).item() == pytest.approx(0.0, abs=1e-7)


def test_each_example_set_is_run_once_per_step():
    calls = []
    logits = two_token_logits()
    batch = batch_of(forget=(logits, LABELS), retain=(logits, LABELS))
    base = context_for(batch)

    def counting(input_ids, attention_mask):
        calls.append(id(input_ids))
        return base._policy(input_ids, attention_mask)

    ctx = LossContext(batch, counting)
    (
        FORGET_TERMS["GA"](ctx),
        FORGET_TERMS["ME"](ctx),
        FORGET_TERMS["SIMNPO"](ctx),
        REGULARIZERS["GD"](ctx),
    )
    assert len(calls) == 2  # forget once, retain once


def test_closer_look_compat_switches_the_me_formula():
    # three positions; position 0 predicts the supervised label 1, position 1 the unsupervised
    # label 2, and position 2 predicts nothing (after the sequence)
    logits = torch.tensor([[[0.0, LN3], [0.0, 0.0], [LN3, 0.0]]])
    labels = torch.tensor([[-100, 1, -100]])
    batch = batch_of(forget=(logits, labels))
    paper = FORGET_TERMS["ME"](context_for(batch)).item()
    compat = FORGET_TERMS["ME"](
        context_for(batch, settings=TermSettings(compat="closer-look"))
    ).item()
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    # paper form: only the position that predicts a supervised token (no position after the end)
    assert paper == pytest.approx(math.log(2) - entropy, rel=1e-6)
    # the code's form: every predicting position (0 and 1), KL(U || p)
    reversed_kl = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    assert compat == pytest.approx((reversed_kl + 0.0) / 2, rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_closer_look_me_is_the_codes_formula_loss_and_gradient(dtype):
    """On a confident model the 1e-12 inside the log bounds the loss and its gradient."""
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11) * 3
    logits[:, :, 0] += 60.0  # p(other tokens) ~ e^-60 << 1e-12
    logits = logits.to(dtype).requires_grad_(True)
    mine = F.uniform_kl_reversed(logits[:, :-1], torch.ones(2, 4))
    mine.backward()
    gradient = logits.grad.clone()

    reference = logits.detach().clone().requires_grad_(True)
    probs = torch.nn.functional.softmax(reference[:, :-1], dim=-1).view(-1, 11)
    uniform = torch.full_like(probs, 1.0 / 11)
    per_position = torch.nn.functional.kl_div((probs + 1e-12).log(), uniform, reduction="none").sum(
        -1
    )
    expected = per_position.mean()
    expected.backward()
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    assert mine.dtype == dtype
    assert mine.item() == pytest.approx(expected.item(), rel=tolerance)
    assert torch.allclose(gradient.float(), reference.grad.float(), rtol=tolerance, atol=1e-6)
    # without the epsilon the loss would be ~ 60 · 10/11 per position, not capped near ln(1e-12)
    assert mine.item() < -math.log(1e-12)


def test_method_names_resolve_and_unknown_ones_list_the_known():
    assert resolve_method("idk+ap").name == "IDK+AP"
    assert resolve_method("SimNPO+GD").forget.name == "SimNPO"
    assert resolve_method("GA").regularizer is None
    for name in ("ME+GD", "IDK+AP", "GA+GD", "SimNPO+GD", "IDK+GD"):
        assert not resolve_method(name).needs_reference
    for name in ("NPO+GD", "NPO+KL", "DPO+GD", "GA+KL", "RMU"):
        assert resolve_method(name).needs_reference
    with pytest.raises(
        UnknownMethodError, match="forget terms: DPO, GA, IDK, ME, NPO, RMU, SimNPO"
    ):
        resolve_method("MEGA+GD")
    with pytest.raises(
        UnknownMethodError, match="unknown regulariser 'XX'.*regularisers: AP, GD, KL"
    ):
        resolve_method("GA+XX")
    with pytest.raises(UnknownMethodError):
        resolve_method("GA+GD+KL")


# ---------------------------------------------------------------------- every registered term by hand
# The terms above that are checked only against trivial values (NPO, DPO, KL with the reference
# equal to the policy), or only through functional.py (SimNPO), or not at all (RMU), are checked
# here through the registry on fixed batches, against closed-form values.


def wrong_token_logits():
    """V = 2; position 0 gives p = (3/4, 1/4), position 1 gives p = (1/4, 3/4): with LABELS both
    supervised targets have probability 1/4."""
    return torch.tensor([[[LN3, 0.0], [0.0, LN3], [0.0, 0.0]]])


def two_samples():
    """Row 0: LABELS, two targets at p = 3/4 (NLL 2 ln 4/3, |y| = 2); row 1: one target, token 1
    predicted by position 1 at p = 1/4 (NLL ln 4, |y| = 1)."""
    logits = torch.cat([two_token_logits(), two_token_logits()])
    labels = torch.tensor([[-100, 1, 0], [-100, -100, 1]])
    return logits, labels


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_simnpo_term_by_hand(gamma):
    ctx = context_for(batch_of(forget=two_samples()), settings=TermSettings(gamma=gamma))
    # −(2/β) · mean_i log σ(β · NLL_i/|y_i| − γ), β = 0.1
    per_token = [2 * math.log(4 / 3) / 2, math.log(4) / 1]
    expected = -(2 / 0.1) * sum(log_sigmoid(0.1 * x - gamma) for x in per_token) / 2
    assert FORGET_TERMS["SIMNPO"](ctx).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_npo_term_by_hand_against_a_uniform_reference(beta):
    # reference_scale=0: the reference is uniform over V = 2, NLL ln 2 per target. NLL_θ − NLL_ref:
    # row 0: 2 ln 4/3 − 2 ln 2 = 2 ln(2/3); row 1: ln 4 − ln 2 = ln 2
    settings = TermSettings(beta=beta)
    ctx = context_for(batch_of(forget=two_samples()), reference_scale=0.0, settings=settings)
    differences = [2 * math.log(2 / 3), math.log(2)]
    expected = -(2 / beta) * sum(log_sigmoid(beta * x) for x in differences) / 2
    assert FORGET_TERMS["NPO"](ctx).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_term_by_hand_against_a_uniform_reference(beta):
    # policy: forget answer NLL 2 ln 4/3 (rejected), refusal NLL 2 ln 4 (preferred);
    # reference (uniform): both 2 ln 2, so its log-ratio is 0.
    # −(2/β) log σ(β · [(−2 ln 4) − (−2 ln 4/3) − 0]) = −(2/β) log σ(−2β ln 3)
    batch = batch_of(forget=(two_token_logits(), LABELS), forget_idk=(wrong_token_logits(), LABELS))
    ctx = context_for(batch, reference_scale=0.0, settings=TermSettings(beta=beta))
    expected = -(2 / beta) * log_sigmoid(-2 * beta * math.log(3))
    assert FORGET_TERMS["DPO"](ctx).item() == pytest.approx(expected, rel=1e-6)


def test_kl_term_by_hand_in_both_forms():
    # retain: position 0 p = (1/4, 3/4), position 1 p = (1/10, 9/10), position 2 uniform; only
    # position 0 predicts a supervised token. Reference: uniform everywhere.
    logits = torch.tensor([[[0.0, LN3], [0.0, math.log(9)], [0.0, 0.0]]])
    labels = torch.tensor([[-100, 1, -100]])
    batch = batch_of(retain=(logits, labels))
    # KL(U ‖ p) = Σ_v ½ ln(½ / p_v)   (not KL(p ‖ U) = ln 2 − H(p) ≈ 0.131 at position 0)
    kl_position_0 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # ≈ 0.144
    kl_position_1 = 0.5 * math.log(0.5 / 0.1) + 0.5 * math.log(0.5 / 0.9)
    paper = REGULARIZERS["KL"](context_for(batch, reference_scale=0.0)).item()
    assert paper == pytest.approx(kl_position_0, rel=1e-6)
    # the public code's form: every position of the padded row, unshifted, mean over B × T = 3
    closer_look = REGULARIZERS["KL"](
        context_for(batch, reference_scale=0.0, settings=TermSettings(compat="closer-look"))
    ).item()
    assert closer_look == pytest.approx((kl_position_0 + kl_position_1 + 0.0) / 3, rel=1e-6)


def rmu_context(forget_hidden, retain_hidden, reference_retain_hidden, settings):
    """A LossContext whose model returns fixed hidden states (3 of them: embeddings and two
    layers, so the default steered layer is 1) for the forget and retain sets; the last token
    of each row is padding."""
    mask = torch.tensor([[1, 1, 0]])
    labels = torch.tensor([[-100, 1, -100]])
    batch = {}
    for name in ("forget", "retain"):
        batch[f"{name}_input_ids"] = torch.zeros(1, 3, dtype=torch.long)
        batch[f"{name}_attention_mask"] = mask
        batch[f"{name}_labels"] = labels

    def model(hidden_of):
        def run(input_ids, attention_mask):
            for name, hidden in hidden_of.items():
                if batch[f"{name}_input_ids"] is input_ids:
                    return torch.zeros(1, 3, 2), tuple(torch.tensor([h]) for h in hidden)
            raise KeyError("unknown input")

        return run

    policy = model({"forget": forget_hidden, "retain": retain_hidden})
    reference = model({"retain": reference_retain_hidden})
    return LossContext(batch, policy, reference, settings)


def test_rmu_term_by_hand():
    garbage = [[50.0, -50.0], [7.0, 7.0], [-9.0, 3.0]]
    # layer 1 (the default, middle one) on forget text: v and −v, then padding. For any unit u,
    # ‖v − c·u‖² + ‖−v − c·u‖² = 2‖v‖² + 2c², so the mean per-token MSE (over d = 2) is
    # (‖v‖² + c²)/d whatever the random direction is.
    forget = [garbage, [[1.0, 2.0], [-1.0, -2.0], [50.0, -50.0]], garbage]
    retain = [garbage, [[1.0, 2.0], [3.0, 0.0], [9.0, 9.0]], [[0.0, 2.0], [0.0, 0.0], [5.0, 5.0]]]
    reference = [
        garbage,
        [[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]],
        [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
    ]
    ctx = rmu_context(forget, retain, reference, TermSettings())
    steer = (5 + 6.5**2) / 2
    keep = ((1 + 4) / 2 + (4 + 0) / 2) / 2  # real tokens only
    assert FORGET_TERMS["RMU"](ctx).item() == pytest.approx(steer + 100 * keep, rel=1e-6)

    # decoder layer 1 chosen explicitly (RMU's layer_id: its output is hidden_states[2]), c = 2,
    # α = 0.5
    forget[2] = [[3.0, 4.0], [-3.0, -4.0], [50.0, -50.0]]
    settings = TermSettings(rmu_layer=1, rmu_steering=2.0, rmu_alpha=0.5)
    ctx = rmu_context(forget, retain, reference, settings)
    steer = (25 + 2.0**2) / 2
    keep = ((0 + 4) / 2 + 0) / 2
    assert FORGET_TERMS["RMU"](ctx).item() == pytest.approx(steer + 0.5 * keep, rel=1e-6)


# Where each registered term's value on a fixed batch is checked against a hand-computed one.
HAND_COMPUTED = {
    "GA": "test_terms_read_the_right_example_sets",
    "IDK": "test_terms_read_the_right_example_sets",
    "GD": "test_terms_read_the_right_example_sets",
    "AP": "test_terms_read_the_right_example_sets",
    "ME": "test_closer_look_compat_switches_the_me_formula",  # paper and closer-look
    "SIMNPO": "test_simnpo_term_by_hand",
    "NPO": "test_npo_term_by_hand_against_a_uniform_reference",
    "DPO": "test_dpo_term_by_hand_against_a_uniform_reference",
    "KL": "test_kl_term_by_hand_in_both_forms",  # paper and closer-look
    "RMU": "test_rmu_term_by_hand",
}


def test_every_registered_term_has_a_hand_computed_value():
    assert set(FORGET_TERMS) | set(REGULARIZERS) == set(HAND_COMPUTED)
    for test in HAND_COMPUTED.values():
        assert callable(globals()[test])
