"""Membership inference and memorisation: hand-computed values, the backend's per-token numbers
against a plain forward pass, and the tasks end to end on a model that memorised half the rows."""

from __future__ import annotations

import json
import math
import zlib

import pytest
import torch

from harness_ext.metrics import privacy as P

# ------------------------------------------------------------------ pure functions, by hand


def test_min_k_takes_the_lowest_forty_percent():
    # 5 tokens: int(5 * 0.4) = 2 lowest, -(-3 + -2) / 2 = 2.5
    assert P.min_k([-0.1, -3.0, -0.5, -2.0, -1.0]) == pytest.approx(2.5)
    # 2 tokens: int(0.8) = 0, at least one token is kept
    assert P.min_k([-0.2, -4.0]) == pytest.approx(4.0)


def test_min_k_plus_plus_standardises_by_the_models_distribution():
    # token 1: (-1 - -2) / sqrt(4) = 0.5; token 2: (-3 - -1) / sqrt(1) = -2;
    # token 3: variance floored to 1e-6: (-0.5 - -0.5) / 1e-3 = 0
    value = P.min_k_plus_plus([-1.0, -3.0, -0.5], [-2.0, -1.0, -0.5], [4.0, 1.0, 0.0])
    assert value == pytest.approx(2.0)  # int(3 * 0.4) = 1 lowest: -(-2)


def test_zlib_score_divides_by_the_compressed_size():
    text = "The author was born in Paris."
    assert P.zlib_score(2.0, text) == pytest.approx(2.0 / len(zlib.compress(text.encode())))


def test_exact_memorization_and_extraction_strength():
    assert P.exact_memorization([True, False, True, True]) == 0.75
    assert P.extraction_strength([True, True, True, True]) == 1.0
    # the last three tokens follow from the first: 1 - 1/4
    assert P.extraction_strength([False, True, True, True]) == 0.75
    # a miss late in the answer: the model needs 3 of 4 tokens
    assert P.extraction_strength([True, True, False, True]) == 0.25
    # nothing completes: open-unlearning's loop stops at n - 1, so 1/n
    assert P.extraction_strength([False, False]) == 0.5


def test_auc_counts_pairs_and_ties():
    assert P.auc([0.1, 0.2], [0.5, 0.9]) == 1.0  # every holdout row looks less like training
    assert P.auc([0.5, 0.9], [0.1, 0.2]) == 0.0
    # pairs (member, holdout): (1,1) tie 0.5, (1,2) 1, (3,1) 0, (3,2) 0 -> 1.5 / 4
    assert P.auc([1.0, 3.0], [1.0, 2.0]) == pytest.approx(0.375)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    members, others = [0.3, 0.1, 0.7, 0.7], [0.2, 0.7, 0.9]
    labels = [0] * len(members) + [1] * len(others)
    expected = sklearn_metrics.roc_auc_score(labels, members + others)
    assert P.auc(members, others) == pytest.approx(expected)


def test_privleak_sign_and_scale():
    assert P.privleak(0.5, 0.5) == 0.0  # as the retain model: no leak
    assert P.privleak(0.75, 0.5) == pytest.approx(-50.0)  # separates better: leaks
    assert P.privleak(0.25, 0.5) == pytest.approx(50.0)  # separates worse: over-unlearned
    assert P.privleak(1.0, 0.6) == pytest.approx(-100.0)
    with pytest.raises(ValueError, match="undefined"):
        P.privleak(0.5, 1.0)


def test_aggregations_report_why_not():
    forget = [{"set": "forget", "score": 0.1}, {"set": "forget", "score": 0.2}]
    holdout = [{"set": "holdout", "score": 0.4}, None]
    assert P.mia_auc_from_items(forget + holdout) == 1.0
    assert P.mia_auc_from_items(forget).startswith("N/A (no holdout rows")
    assert P.mia_auc_from_items([{"set": "forget", "score": "N/A (x)"}, *holdout]) == "N/A (x)"
    with_ref = [{**i, "retain_auc": 0.5} for i in forget + holdout[:1]]
    assert P.privleak_from_items(with_ref) == pytest.approx(-100.0)
    assert P.privleak_from_items(forget + holdout[:1]).startswith("N/A (no retain reference")


# ------------------------------------------------------------------ the backend's token numbers


def test_backend_token_numbers_equal_a_plain_forward_pass(tiny_model_dir):
    from harness_ext.lm_eval_plugin.backend import UnlearnHFLM
    from harness_ext.lm_eval_plugin.shared_context import ScoredContinuation

    lm = UnlearnHFLM(pretrained=str(tiny_model_dir), batch_size=4, device="cpu")
    tokenizer = lm.tokenizer
    context = tokenizer("Question: Who wrote it?\nAnswer:")["input_ids"]
    answers = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in
               (" Jaime Vasquez wrote it.", " Jaime wrote nothing.", " Nobody")]  # fmt: skip
    requests = [(None, context, answer) for answer in answers]
    results = lm._loglikelihood_tokens(requests, disable_tqdm=True)
    for answer, result in zip(answers, results, strict=True):
        assert isinstance(result, ScoredContinuation)
        ids = torch.tensor([context + answer])
        with torch.no_grad():
            log_probs = torch.log_softmax(lm.model(ids).logits[0].double(), -1)
        steps = log_probs[len(context) - 1 : -1]
        target = torch.tensor(answer)
        picked = steps.gather(-1, target[:, None]).squeeze(-1)
        mean = (steps.exp() * steps).sum(-1)
        variance = (steps.exp() * steps.square()).sum(-1) - mean.square()
        got = torch.tensor([t[:3] for t in result.tokens], dtype=torch.double)
        assert torch.allclose(got[:, 0], picked, atol=1e-5)
        assert torch.allclose(got[:, 1], mean, atol=1e-4)
        assert torch.allclose(got[:, 2], variance, atol=1e-3)
        assert [t[3] for t in result.tokens] == (steps.argmax(-1) == target).tolist()
        assert result[0] == pytest.approx(float(picked.sum()), abs=1e-4)
        assert result[1] == all(t[3] for t in result.tokens)


def test_scored_continuation_pickles_with_its_tokens():
    import pickle

    from harness_ext.lm_eval_plugin.shared_context import ScoredContinuation

    scored = ScoredContinuation(-1.5, False, [(-1.0, -2.0, 0.5, False), (-0.5, -1.0, 0.2, True)])
    again = pickle.loads(pickle.dumps(scored))
    assert tuple(again) == (-1.5, False) and again.tokens == scored.tokens
    assert json.loads(json.dumps(scored)) == [-1.5, False]  # samples files keep the pair


# ------------------------------------------------------------------ the tasks end to end
ROWS = 8  # forget01 rows the model memorises; as many unseen retain rows are the holdout
HOLDOUT = f"retain_perturbed[360:{360 + ROWS}]"


def evaluate(model_dir, backend="hf-unlearn", rows=ROWS, **metadata):
    from harness_ext.lm_eval_plugin.results import task_metrics
    from harness_ext.lm_eval_plugin.run import run_tasks

    limits = {"forget": rows, "retain": 1, "real_authors": 1, "world_facts": 1}
    holdout = f"retain_perturbed[360:{360 + rows}]"
    results = run_tasks(
        {"pretrained": str(model_dir)},
        ["tofu_forget01_unlearn"],
        backend=backend,
        metadata={"max_rows_per_set": limits, "holdout": holdout, **metadata},
        batch_size=8,
    )
    return results, task_metrics(results, "tofu_forget01_unlearn")


@pytest.fixture(scope="module")
def memorised_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model fine-tuned until it reproduces the first ROWS forget01 answers."""
    from unlearn_methods.config import FinetuneConfig
    from unlearn_methods.finetune import finetune

    out = tmp_path_factory.mktemp("memorised")
    finetune(
        FinetuneConfig(
            model=str(tiny_model_dir),
            output_dir=str(out),
            data=f"forget01[:{ROWS}]",
            num_train_epochs=150,
            learning_rate=3e-3,
            per_device_train_batch_size=ROWS,
            effective_batch_size=ROWS,
            max_length=128,
            prompt_format="plain",
            bf16=False,
        )
    )
    return out


@pytest.fixture(scope="module")
def memorised_run(memorised_dir, tmp_path_factory):
    results, metrics = evaluate(memorised_dir)
    folder = tmp_path_factory.mktemp("memorised-run")
    (folder / "results.json").write_text(json.dumps(results, default=str))
    return results, metrics


def test_memorised_rows_are_told_apart_from_unseen_ones(memorised_run):
    _, metrics = memorised_run
    for attack in ("loss", "zlib", "min_k", "min_k_plus_plus"):
        assert metrics[P.mia_key(attack)] == 1.0, attack
    assert metrics["forget_exact_memorization"] > 0.9
    assert metrics["forget_extraction_strength"] > 0.8
    assert metrics["privleak"].startswith("N/A (no retain reference")
    assert metrics["mia_reference_auc"].startswith("N/A (no retain reference")


def test_per_row_scores_are_in_the_samples_and_recompute_the_aucs(memorised_run):
    results, metrics = memorised_run
    samples = results["samples"]["tofu_forget01_unlearn"]
    holdout = [s for s in samples if s["doc"]["set"] == "holdout"]
    assert [s["doc"]["row"] for s in holdout] == list(range(360, 360 + ROWS))
    for attack in ("loss", "min_k_plus_plus"):
        key = P.mia_key(attack)
        scores = {s["doc"]["set"]: [] for s in samples}
        for s in samples:
            if s[key] is not None:
                scores[s[key]["set"]].append(s[key]["score"])
        assert P.auc(scores["forget"], scores["holdout"]) == metrics[key]
    loss = [s["mia_loss_auc"]["score"] for s in samples if s["doc"]["set"] == "forget"]
    nll = [s["model_utility"]["scored_answers"]["mean_nll"][0] for s in samples
           if s["doc"]["set"] == "forget"]  # fmt: skip
    assert loss == nll  # LOSS is the answer's mean NLL of the other metrics


def test_random_model_cannot_tell_them_apart(tiny_model_dir):
    # 40 forget rows against 40 unseen ones: under no separation an AUC has a standard
    # deviation of sqrt(81 / (12 * 1600)) = 0.065, so 0.25-0.75 is about four of them
    _, metrics = evaluate(tiny_model_dir, rows=40)
    for attack in ("loss", "min_k"):
        assert 0.25 <= metrics[P.mia_key(attack)] <= 0.75, (attack, metrics[P.mia_key(attack)])


def save_run(model_dir, folder, **metadata):
    """Score a model and write its results and samples files as ``lm_eval`` does."""
    from lm_eval.loggers import EvaluationTracker

    from harness_ext.lm_eval_plugin.run import run_tasks

    tracker = EvaluationTracker(output_path=str(folder))
    limits = {"forget": ROWS, "retain": 1, "real_authors": 1, "world_facts": 1}
    results = run_tasks(
        {"pretrained": str(model_dir)},
        ["tofu_forget01_unlearn"],
        metadata={"max_rows_per_set": limits, "holdout": HOLDOUT, **metadata},
        batch_size=8,
        evaluation_tracker=tracker,
    )
    tracker.save_results_aggregated(results=results, samples=results["samples"])
    for task, samples in results["samples"].items():
        tracker.save_results_samples(task_name=task, samples=samples)
    return results["results"]["tofu_forget01_unlearn"]


def test_the_retain_reference_gives_privleak_and_the_reference_attack(
    memorised_dir, tiny_model_dir, tmp_path
):
    """The random model as the 'retain model' of the memorised one, and each against itself."""
    reference_dir = tmp_path / "reference"
    retain_auc = save_run(tiny_model_dir, reference_dir)["mia_min_k_auc,none"]

    _, mine = evaluate(memorised_dir, retain_reference=str(reference_dir))
    assert mine["privleak"] == pytest.approx(P.privleak(1.0, retain_auc))
    assert mine["privleak"] < 0  # it leaks: the forget rows stand out
    assert mine["mia_reference_auc"] == 1.0  # its NLLs fell on the forget rows only
    _, itself = evaluate(tiny_model_dir, retain_reference=str(reference_dir))
    assert itself["privleak"] == pytest.approx(0.0)
    assert itself["mia_reference_auc"] == 0.5  # every score is 0: all ties


def test_a_reference_without_membership_scores_is_refused(tiny_model_dir, tmp_path):
    from harness_ext.lm_eval_plugin.requests import TaskSetupError

    save_run(tiny_model_dir, tmp_path / "old", holdout="none")
    with pytest.raises(TaskSetupError, match="carries no membership-inference scores"):
        evaluate(tiny_model_dir, retain_reference=str(tmp_path / "old"))
    # with the default holdout (none in the local data) it only says why privleak is missing
    _, metrics = evaluate(tiny_model_dir, retain_reference=str(tmp_path / "old"), holdout=None)
    assert metrics["privleak"].startswith("N/A (no holdout rows")


def test_hf_backend_gives_the_per_token_metrics_through_requests(memorised_dir):
    """lm-eval's hf returns a sum and an is-greedy flag per request: one request per answer
    token gives Min-K%, extraction strength and exact memorisation, equal per row to
    hf-unlearn's own per-token numbers; Min-K%++ needs the whole distribution and says so."""
    fast, fast_metrics = evaluate(memorised_dir)
    slow, slow_metrics = evaluate(memorised_dir, backend="hf")
    by_row = lambda results: {  # noqa: E731
        (s["doc"]["set"], s["doc"]["row"]): s for s in results["samples"]["tofu_forget01_unlearn"]
    }
    fast_rows, slow_rows = by_row(fast), by_row(slow)
    checked = approximate = 0
    for key, sample in slow_rows.items():
        if key[0] not in ("forget", "holdout"):
            continue
        other = fast_rows[key]
        for name in ("mia_loss_auc", "mia_zlib_auc"):
            assert sample[name]["score"] == pytest.approx(other[name]["score"], abs=1e-4), key
        # a character the tokenizer splits into byte pieces (no string ends between them):
        # the pieces share their log-prob, so Min-K% is close, not equal
        exact = sample["doc"]["answer"].isascii()
        approx = pytest.approx(
            other["mia_min_k_auc"]["score"], **({"abs": 1e-4} if exact else {"rel": 0.05})
        )
        assert sample["mia_min_k_auc"]["score"] == approx, key
        approximate += not exact
        if key[0] == "forget":
            for name in ("forget_extraction_strength", "forget_exact_memorization"):
                assert sample[name] == other[name], (key, name)
        assert "next-token distribution" in sample["mia_min_k_plus_plus_auc"]["score"]
        checked += 1
    assert checked == 2 * ROWS and approximate < ROWS
    for key in ("mia_min_k_auc", "forget_extraction_strength", "forget_exact_memorization"):
        assert slow_metrics[key] == fast_metrics[key], key
    assert "hf-unlearn" in slow_metrics["mia_min_k_plus_plus_auc"]
    provenance = slow["configs"]["tofu_forget01_unlearn"]["metadata"]["tofu"]["token_scores"]
    assert provenance["per_token_requests"] > 0


def test_token_scores_off_says_what_is_missing(tiny_model_dir):
    _, metrics = evaluate(tiny_model_dir, backend="hf", token_scores="off")
    assert isinstance(metrics["mia_loss_auc"], float)  # sums are enough for LOSS and ZLib
    assert isinstance(metrics["mia_zlib_auc"], float)
    for key in ("mia_min_k_auc", "mia_min_k_plus_plus_auc", "forget_exact_memorization"):
        assert "token_scores is off" in metrics[key], key


def test_hf_unlearn_skips_the_per_token_requests_it_does_not_need(tiny_model_dir):
    """The task marks its per-token requests; hf-unlearn answers them only when its own results
    lack per-token numbers (share_context=false runs hf's code)."""
    import math

    from lm_eval.api.instance import Instance

    from harness_ext.lm_eval_plugin.backend import UnlearnHFLM

    def requests():
        made = []
        for index, pair in enumerate(
            [("Question: Who?\nAnswer:", " Ann"), ("Question: Who?\nAnswer:", " A")]
        ):
            instance = Instance("loglikelihood", {}, pair, index)
            instance.token_probe = index == 1
            made.append(instance)
        return made

    fast = UnlearnHFLM(pretrained=str(tiny_model_dir), batch_size=4, device="cpu")
    answer, probe = fast.loglikelihood(requests())
    assert hasattr(answer, "tokens") and math.isnan(probe[0])
    slow = UnlearnHFLM(
        pretrained=str(tiny_model_dir), batch_size=4, device="cpu", share_context=False
    )
    answer, probe = slow.loglikelihood(requests())
    assert not hasattr(answer, "tokens") and math.isfinite(probe[0])


def test_bad_holdouts_are_refused_before_the_model_loads(tiny_model_dir):
    from tofu_tasks.data import TofuDataError

    with pytest.raises(TofuDataError, match="forget-set questions"):
        evaluate(tiny_model_dir, holdout="forget01_perturbed[0:4]")
    with pytest.raises(TofuDataError, match="neither a TOFU holdout split"):
        evaluate(tiny_model_dir, holdout="no-such-file.json")
    with pytest.raises(TofuDataError, match="outside"):
        evaluate(tiny_model_dir, holdout="retain_perturbed[390:500]")


def test_without_a_holdout_the_aucs_say_why(tiny_model_dir):
    _, metrics = evaluate(tiny_model_dir, holdout=None)  # the local data has no holdout file
    assert metrics["mia_loss_auc"].startswith("N/A (no holdout rows")
    assert math.isfinite(metrics["forget_exact_memorization"])
