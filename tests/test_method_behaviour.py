"""Every method does what it claims, measured on a tiny model that first memorises what it must
forget.

The tiny random Llama is fine-tuned until it reproduces four forget01 answers and their retain
partners almost perfectly (NLL ≈ 0.02 nats per token). Each test then starts from a copy of that
model, runs a few optimiser steps of one term (or a forget term with and without its regulariser)
through the same ``LossContext`` the trainer uses, and checks the quantity the method claims to
move, with a wide margin. The measured numbers are printed (``pytest -s`` shows them).

Adam steps, not SGD: the terms' gradients differ in scale by orders of magnitude (RMU's MSE on
one layer vs a summed-NLL sigmoid), and Adam moves every term by about the learning rate per step,
so one setting works for all; the scale of each term is checked by the hand-computed values in
test_unlearn_losses.py.
"""

from __future__ import annotations

import copy

import pytest
import torch

from harness_ext.prompts import get_prompt_format
from unlearn_methods import FORGET_TERMS, REGULARIZERS
from unlearn_methods.data import PromptEncoder, UnlearnCollator, UnlearnDataset, load_unlearn_data
from unlearn_methods.losses import functional as F
from unlearn_methods.losses.context import LossContext, TermSettings
from unlearn_methods.losses.rmu import steering_direction

SETS = ("forget", "retain", "forget_idk", "retain_idk")
ROWS = 4  # forget01 rows memorised (with their fixed retain partners and refusals)
STEPS = 10  # unlearning steps of each test
LR = 1e-3  # Adam learning rate of the unlearning steps


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """This model is so small that one thread is fastest, and much faster than two on a machine
    whose cores are busy with other work (thread synchronisation then dominates)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def batch(tiny_tokenizer):
    data = load_unlearn_data("forget01")
    encoder = PromptEncoder(tiny_tokenizer, get_prompt_format("plain"), max_length=96)
    dataset = UnlearnDataset(data, encoder, SETS, pairing="fixed")
    return UnlearnCollator(tiny_tokenizer.pad_token_id, SETS)([dataset[i] for i in range(ROWS)])


def forward(model, hidden=False):
    def run(input_ids, attention_mask):
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=hidden,
            use_cache=False,
        )
        return out.logits, (out.hidden_states if hidden else None)

    return run


def outputs(model, batch, reference=None, hidden=False):
    """A LossContext for measuring (no gradients are taken through it)."""
    return LossContext(
        batch, forward(model, hidden), forward(reference, hidden) if reference is not None else None
    )


@pytest.fixture(scope="module")
def memorised(tiny_model_dir, batch):
    """A factory of copies of the tiny model after it memorised the forget and retain answers."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.attention_dropout == 0.0  # deterministic steps
    torch.manual_seed(0)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(60):
        optimiser.zero_grad()
        ctx = LossContext(batch, forward(model))
        (ctx.policy("forget").mean_token_nll + ctx.policy("retain").mean_token_nll).backward()
        optimiser.step()
    with torch.no_grad():
        ctx = outputs(model, batch)
        nll = {name: ctx.policy(name).mean_token_nll.item() for name in SETS}
    print(f"memorised: mean token NLL { ({k: round(v, 4) for k, v in nll.items()}) }")
    # the answers are memorised; the refusals were never trained on
    assert nll["forget"] < 0.1 and nll["retain"] < 0.1
    assert nll["forget_idk"] > 5 and nll["retain_idk"] > 5
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def fresh():
        copy_ = copy.deepcopy(model)
        copy_.load_state_dict(state)
        return copy_

    return fresh


def unlearn(memorised, batch, *terms, settings=None, steps=STEPS, lr=LR):
    """``steps`` Adam steps of the summed terms from the memorised model; returns the model and
    the reference (the memorised model, frozen; None when no term needs one)."""
    torch.manual_seed(0)
    settings = settings or TermSettings()
    model = memorised()
    reference = None
    if any(t.needs_reference for t in terms):
        reference = memorised().eval().requires_grad_(False)
    hidden = any(t.uses_hidden_states for t in terms)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        ctx = LossContext(
            batch,
            forward(model, hidden),
            forward(reference, hidden) if reference is not None else None,
            settings,
        )
        sum(term(ctx) for term in terms).backward()
        optimiser.step()
    return model, reference


# ---------------------------------------------------------------------- measurements
@torch.no_grad()
def forget_nll(model, batch):
    """Mean token NLL of the forget answers."""
    return outputs(model, batch).policy("forget").mean_token_nll.item()


@torch.no_grad()
def retain_nll(model, batch):
    return outputs(model, batch).policy("retain").mean_token_nll.item()


@torch.no_grad()
def forget_entropy(model, batch):
    """Mean predictive entropy (nats) at the positions that predict the forget answer tokens."""
    logits, mask = outputs(model, batch).policy("forget").shifted
    return F.predictive_entropy(logits, mask).item()


@torch.no_grad()
def refusal_margins(model, batch, prefix):
    """Per question: NLL(true answer) − NLL(refusal), summed over tokens. Rises as the refusal
    becomes more likely than the answer; ``prefix`` is "forget" or "retain"."""
    ctx = outputs(model, batch)
    return ctx.policy(prefix).summed_nll - ctx.policy(f"{prefix}_idk").summed_nll


@torch.no_grad()
def retain_kl(model, reference, batch):
    """KL(p_ref ‖ p_θ) at the positions that predict the retain answers."""
    ctx = outputs(model, batch, reference)
    logits, mask = ctx.policy("retain").shifted
    reference_logits, _ = ctx.reference("retain").shifted
    return F.kl_to_reference(logits, reference_logits, mask).item()


def show(name, quantity, before, after):
    print(f"{name}: {quantity} {before:.4f} -> {after:.4f}")


# ---------------------------------------------------------------------- forget terms
@pytest.mark.parametrize("term", ["GA", "NPO", "SimNPO"])
def test_untargeted_terms_raise_the_forget_nll(memorised, batch, term):
    before = forget_nll(memorised(), batch)
    model, _ = unlearn(memorised, batch, FORGET_TERMS[term.upper()])
    after = forget_nll(model, batch)
    show(term, "forget answers' mean token NLL", before, after)
    # measured: 0.022 -> GA 9.2, NPO 4.6, SimNPO 9.1
    assert after > before + 2.0


@pytest.mark.parametrize("compat", ["paper", "closer-look"])
def test_me_raises_the_predictive_entropy_on_the_forget_answers(memorised, batch, compat):
    before = forget_entropy(memorised(), batch)
    model, _ = unlearn(memorised, batch, FORGET_TERMS["ME"], settings=TermSettings(compat=compat))
    after = forget_entropy(model, batch)
    show(f"ME ({compat})", "predictive entropy on forget answer positions", before, after)
    # measured: 0.14 -> 6.7 (paper), 6.6 (closer-look); the maximum is log V = 6.93
    assert after > before + 2.0


@pytest.mark.parametrize("term", ["IDK", "DPO"])
def test_targeted_terms_raise_the_refusal_relative_to_the_forget_answer(memorised, batch, term):
    before = refusal_margins(memorised(), batch, "forget")
    model, _ = unlearn(memorised, batch, FORGET_TERMS[term])
    after = refusal_margins(model, batch, "forget")
    show(
        term,
        "mean NLL(forget answer) − NLL(refusal) on forget questions",
        before.mean().item(),
        after.mean().item(),
    )
    # measured: -186.7 -> IDK -11.4, DPO -83.5 (summed nats per question)
    assert (after > before + 20.0).all()
    assert after.mean() > before.mean() + 50.0


@torch.no_grad()
def rmu_layer_state(model, reference, batch, steering):
    """On the steered layer: mean activation norm on real forget tokens, its mean distance to the
    target c·u, its mean cosine with and projection on u, and the mean distance of the forget and
    of the retain activations to the reference model's."""
    ctx = outputs(model, batch, reference, hidden=True)
    forget = ctx.policy("forget")
    layer = len(forget.hidden_states) // 2  # RMU's default: the middle one
    h = forget.hidden_states[layer][forget.attention_mask.bool()]
    u = steering_direction(h.shape[-1], h.device, h.dtype)
    retain = ctx.policy("retain")
    real = retain.attention_mask.bool()
    drift = retain.hidden_states[layer][real] - ctx.reference("retain").hidden_states[layer][real]
    moved = h - ctx.reference("forget").hidden_states[layer][forget.attention_mask.bool()]
    return {
        "norm": h.norm(dim=-1).mean().item(),
        "to_target": (h - steering * u).norm(dim=-1).mean().item(),
        "cosine": torch.nn.functional.cosine_similarity(h, u.expand_as(h), dim=-1).mean().item(),
        "projection": (h @ u).mean().item(),
        "forget_drift": moved.norm(dim=-1).mean().item(),
        "retain_drift": drift.norm(dim=-1).mean().item(),
    }


def test_rmu_steers_the_forget_activations_to_the_target_and_keeps_retain_ones(memorised, batch):
    settings = TermSettings()
    c = settings.rmu_steering
    start = memorised()
    before = rmu_layer_state(start, start, batch, c)
    model, reference = unlearn(memorised, batch, FORGET_TERMS["RMU"], settings=settings)
    after = rmu_layer_state(model, reference, batch, c)
    show("RMU", f"|mean activation norm − c={c}| on forget text", abs(before["norm"] - c),
         abs(after["norm"] - c))  # fmt: skip
    for key in ("norm", "to_target", "cosine", "projection", "forget_drift", "retain_drift"):
        show("RMU", key, before[key], after[key])
    # the same steps without RMU's retain term (α = 0)
    unkept, _ = unlearn(memorised, batch, FORGET_TERMS["RMU"], settings=TermSettings(rmu_alpha=0))
    unkept = rmu_layer_state(unkept, reference, batch, c)
    show("RMU (alpha=0)", "retain_drift", before["retain_drift"], unkept["retain_drift"])
    # measured: |norm − c| 1.41 -> 0.25, distance to c·u 10.17 -> 8.62, cosine 0.05 -> 0.10,
    # projection on u 0.33 -> 0.65; forget activations moved 2.51 from the reference's, retain
    # ones 0.26 (3.40 with α = 0)
    assert abs(after["norm"] - c) < 0.5 * abs(before["norm"] - c)
    # towards the target vector, not merely a shrinking norm
    assert after["to_target"] < before["to_target"] - 1.0
    assert after["cosine"] > before["cosine"] + 0.03
    # while the retain activations stay (nearly) where they were, thanks to the retain term
    assert after["retain_drift"] < 0.25 * after["forget_drift"]
    assert after["retain_drift"] < 0.25 * unkept["retain_drift"]


def test_rmu_steers_further_along_its_direction_for_a_larger_target_norm(memorised, batch):
    """c matters: the same steps with c = 20 push the forget activations further along u than
    with c = 2 (a term that ignored c, or steered to a unit vector, would not)."""
    start = memorised()
    before = rmu_layer_state(start, start, batch, 2.0)["projection"]
    reached = {}
    for c in (2.0, 20.0):
        model, reference = unlearn(
            memorised, batch, FORGET_TERMS["RMU"], settings=TermSettings(rmu_steering=c)
        )
        reached[c] = rmu_layer_state(model, reference, batch, c)["projection"]
        show(f"RMU (c={c})", "mean projection of forget activations on u", before, reached[c])
    # measured: 0.33 -> 0.39 (c = 2), 1.38 (c = 20)
    assert reached[20.0] > reached[2.0] + 0.5


# ---------------------------------------------------------------------- regularisers
def test_gd_keeps_the_retain_answers_that_ga_alone_destroys(memorised, batch):
    before = retain_nll(memorised(), batch)
    alone, _ = unlearn(memorised, batch, FORGET_TERMS["GA"])
    regularised, _ = unlearn(memorised, batch, FORGET_TERMS["GA"], REGULARIZERS["GD"])
    after_alone, after_regularised = retain_nll(alone, batch), retain_nll(regularised, batch)
    show("GA", "retain answers' mean token NLL", before, after_alone)
    show("GA+GD", "retain answers' mean token NLL", before, after_regularised)
    show("GA+GD", "forget answers' mean token NLL", forget_nll(memorised(), batch),
         forget_nll(regularised, batch))  # fmt: skip
    # measured: 0.025 -> GA 3.5, GA+GD 0.47
    assert after_regularised < 0.5 * after_alone and after_alone - after_regularised > 1.0
    assert forget_nll(regularised, batch) > forget_nll(memorised(), batch) + 2.0  # still forgets


def test_kl_keeps_the_model_closer_to_the_reference_than_npo_alone(memorised, batch):
    alone, reference = unlearn(memorised, batch, FORGET_TERMS["NPO"])
    regularised, _ = unlearn(memorised, batch, FORGET_TERMS["NPO"], REGULARIZERS["KL"])
    kl_alone = retain_kl(alone, reference, batch)
    kl_regularised = retain_kl(regularised, reference, batch)
    show("NPO", "KL(ref ‖ θ) on retain answers", 0.0, kl_alone)
    show("NPO+KL", "KL(ref ‖ θ) on retain answers", 0.0, kl_regularised)
    show("NPO+KL", "forget answers' mean token NLL", forget_nll(memorised(), batch),
         forget_nll(regularised, batch))  # fmt: skip
    # measured: NPO 1.43, NPO+KL 0.23
    assert kl_regularised < 0.5 * kl_alone and kl_alone - kl_regularised > 0.5
    assert forget_nll(regularised, batch) > forget_nll(memorised(), batch) + 2.0


def test_ap_keeps_retain_answers_preferred_over_the_refusal_that_idk_alone_spreads(
    memorised, batch
):
    """IDK teaches a refusal on forget questions, and the tiny model spreads it to the retain
    questions (the same refusal string; fixed pairing). AP keeps the true retain answer ahead.
    A larger learning rate than elsewhere, so that IDK alone visibly flips the preference."""
    start = memorised()
    before = refusal_margins(start, batch, "retain")
    before_nll = retain_nll(start, batch)
    alone, _ = unlearn(memorised, batch, FORGET_TERMS["IDK"], lr=3e-3)
    regularised, _ = unlearn(memorised, batch, FORGET_TERMS["IDK"], REGULARIZERS["AP"], lr=3e-3)
    # margin here: NLL(refusal) − NLL(retain answer), positive while the answer is preferred
    margin_alone = -refusal_margins(alone, batch, "retain")
    margin_regularised = -refusal_margins(regularised, batch, "retain")
    quantity = "NLL(refusal) − NLL(retain answer) on retain questions, per question"
    print(f"IDK: {quantity} {(-before).tolist()} -> {margin_alone.tolist()}")
    print(f"IDK+AP: {quantity} {(-before).tolist()} -> {margin_regularised.tolist()}")
    show("IDK", "retain answers' mean token NLL", before_nll, retain_nll(alone, batch))
    show("IDK+AP", "retain answers' mean token NLL", before_nll, retain_nll(regularised, batch))
    forget_before = refusal_margins(start, batch, "forget").mean().item()
    show("IDK+AP", "mean NLL(forget answer) − NLL(refusal) on forget questions", forget_before,
         refusal_margins(regularised, batch, "forget").mean().item())  # fmt: skip
    # measured (summed nats): before 147..203 on every question; IDK alone -105..-60 (all flipped);
    # IDK+AP 63..87 (all kept); retain NLL 0.025 -> IDK 3.7, IDK+AP 0.83
    assert (-before > 0).all()
    assert (margin_regularised > 0).all()
    assert margin_regularised.mean() > margin_alone.mean() + 50.0
    assert (margin_alone < 0).all()  # IDK alone lets the refusal win on every retain question
    assert retain_nll(regularised, batch) < 0.5 * retain_nll(alone, batch)
    # and the forget questions still move towards the refusal
    assert refusal_margins(regularised, batch, "forget").mean().item() > forget_before + 50.0
