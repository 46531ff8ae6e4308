"""Every loss term against values computed by hand on tiny tensors."""

import math

import pytest
import torch

from unlearn_methods import functional as F
from unlearn_methods.context import LossContext, TermSettings
from unlearn_methods.registry import FORGET_TERMS, REGULARIZERS, UnknownMethodError, resolve_method

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
    logits = torch.tensor([[[0.0, LN3], [0.0, 0.0]]])
    labels = torch.tensor([[-100, 1]])
    batch = batch_of(forget=(logits, labels))
    paper = FORGET_TERMS["ME"](context_for(batch)).item()
    compat = FORGET_TERMS["ME"](
        context_for(batch, settings=TermSettings(compat="closer-look"))
    ).item()
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert paper == pytest.approx((math.log(2) - entropy) / 2, rel=1e-6)  # mean over 2 real tokens
    assert compat == pytest.approx((0.5 * math.log(2) + 0.5 * math.log(2 / 3)) / 2, rel=1e-6)


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
