"""Evaluation during training (`--eval-every`) and checkpoint selection (`--select`) on the tiny
model: metrics at the right steps in the Trainer's log and the run card, the kept checkpoint's
weights as the output, a target never reached, resuming, two processes, and bad options."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from unlearn_methods.config import UnlearnConfig
from unlearn_methods.train import dry_run, read_run_card, train

# GA+GD, 4 steps of 4 examples (2 per micro-batch), scored at steps 2 and 4 on one row of each
# set with a short generation budget: the evaluations take seconds.
SETTINGS = dict(
    method="GA+GD", forget="forget01", max_steps=4, per_device_train_batch_size=2,
    effective_batch_size=4, max_length=96, learning_rate=1e-2, prompt_format="plain",
    pairing="fixed",
)  # fmt: skip
EVAL = dict(eval_every=2, eval_rows=1, eval_metadata={"generation_max_length": 40})
CLI_EVAL = ["--eval-every", "2", "--eval-rows", "1",
            "--eval-metadata", '{"generation_max_length": 40}']  # fmt: skip
CLI_SETTINGS = ["--method", "GA+GD", "--forget", "forget01", "--max-steps", "4",
                "--per-device-train-batch-size", "2", "--effective-batch-size", "4", "--max-length", "96",
                "--learning-rate", "1e-2", "--prompt-format", "plain", "--pairing", "fixed"]  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """As in the two launched processes (OMP_NUM_THREADS=1): same sums, same weights."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(model, output, **extra) -> Path:
    return train(UnlearnConfig(model=str(model), output_dir=str(output), **{**SETTINGS, **extra}))


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def assert_same_weights(a: Path, b: Path) -> None:
    one, two = weights(a), weights(b)
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(one[name], two[name], rtol=0, atol=1e-6, msg=name)


def eval_metrics(card: dict) -> list[tuple[int, dict]]:
    return [(r["step"], r["metrics"]) for r in card["evaluation"]["history"]]


@pytest.fixture(scope="module")
def evaluated(tiny_model_dir, tmp_path_factory) -> Path:
    """Scored at steps 2 and 4, checkpoints kept at both; `forget_prob<=1` is reached at step 2
    and --no-stop-at-selection trains on, so the output is step 2's model."""
    output = tmp_path_factory.mktemp("evaluated") / "run"
    return run(
        tiny_model_dir, output, **EVAL, select="forget_prob<=1", stop_at_selection=False,
        save_steps=2, keep_checkpoints=True,
    )  # fmt: skip


def checkpoint(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"checkpoint-{step}"


def test_metrics_are_logged_at_every_nth_step_and_recorded(evaluated):
    card = read_run_card(evaluated)
    history = card["evaluation"]["history"]
    assert [r["step"] for r in history] == [2, 4]
    assert card["evaluation"]["task"] == "tofu_forget01_unlearn"
    assert card["evaluation"]["task_options"]["max_rows_per_set"] == 1
    for record in history:
        assert isinstance(record["metrics"]["forget_rougeL_recall"], float)
        assert 0 < record["metrics"]["forget_prob"] < 1 and record["seconds"] > 0
        assert record["metrics"]["forget_entailment"].startswith("N/A")  # no NLI model
    # the Trainer's log (what TensorBoard / W&B get): eval_<metric> at steps 2 and 4, and the
    # loss of every step still logged
    state = json.loads((checkpoint(evaluated, 4) / "trainer_state.json").read_text())
    logged = [h for h in state["log_history"] if "eval_forget_prob" in h]
    assert [h["step"] for h in logged] == [2, 4]
    for entry, record in zip(logged, history, strict=True):
        assert entry["eval_forget_prob"] == record["metrics"]["forget_prob"]
        assert not any(k.startswith("eval_") and isinstance(v, str) for k, v in entry.items())
    assert [h["step"] for h in card["losses"]["per_step"]] == [1, 2, 3, 4]


def test_evaluating_leaves_training_unchanged(evaluated, tiny_model_dir, tmp_path):
    """A run without evaluations reaches step 4's weights of the evaluated run."""
    plain = run(tiny_model_dir, tmp_path / "plain")
    assert "evaluation" not in read_run_card(plain)
    assert_same_weights(plain, checkpoint(evaluated, 4))


def test_scoring_restores_mode_gradients_and_random_state(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from unlearn_methods.evaluation import score_live_model
    from unlearn_methods.evaluation_plan import plan_evaluation

    options = UnlearnConfig(model=str(tiny_model_dir), output_dir="unused", **SETTINGS, **EVAL)
    plan = plan_evaluation(options, "plain")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.train()
    torch.manual_seed(3)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    grads = [p.grad.clone() for p in model.parameters()]
    state = torch.get_rng_state()
    metrics = score_live_model(model, AutoTokenizer.from_pretrained(tiny_model_dir), plan)
    assert isinstance(metrics["forget_prob"], float)
    assert model.training
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))
    assert torch.equal(torch.get_rng_state(), state)


def test_the_first_checkpoint_reaching_the_target_is_kept_when_training_goes_on(evaluated):
    selection = read_run_card(evaluated)["selection"]
    assert selection["rule"] == "forget_prob<=1" and selection["reached"] is True
    assert (selection["step"], selection["final_step"], selection["stopped_early"]) == (2, 4, False)
    assert (
        selection["value"]
        == read_run_card(evaluated)["evaluation"]["history"][0]["metrics"]["forget_prob"]
    )
    assert_same_weights(evaluated, checkpoint(evaluated, 2))


def write_reference(path: Path, docs: list[dict], generation_of) -> Path:
    from harness_ext.metrics.references import ReferenceRow
    from tofu_tasks.reference_files import write_reference_file

    rows = [ReferenceRow(d["set"], d["question"], generation_of(d), 1.0, d["row"]) for d in docs]
    return write_reference_file(path, rows, {"prompt_format": "plain"})


def scored_docs() -> list[dict]:
    from unlearn_methods.evaluation_plan import scored_docs as docs_of

    return docs_of("tofu_forget01_unlearn", {"max_rows_per_set": 1})


def test_training_stops_at_the_retain_models_value(evaluated, tiny_model_dir, tmp_path):
    """--select-matching-reference: a retain model that says the answers (forget ROUGE-L 1.0)
    sets the target forget_rougeL_recall <= 1.0, reached at the first evaluation: training
    stops at step 2 and the output is step 2's model."""
    reference = write_reference(tmp_path / "retain.json", scored_docs(), lambda d: d["answer"])
    output = run(
        tiny_model_dir, tmp_path / "stop", **EVAL, select_matching_reference=str(reference)
    )
    card = read_run_card(output)
    selection = card["selection"]
    assert selection["rule"] == "forget_rougeL_recall<=1" and selection["target"] == 1.0
    assert selection["reference"] == str(reference) and "retain model" in selection["why"]
    assert (selection["reached"], selection["step"], selection["stopped_early"]) == (True, 2, True)
    assert card["global_steps"] == 2 and [r["step"] for r in card["evaluation"]["history"]] == [2]
    assert_same_weights(output, checkpoint(evaluated, 2))


def test_the_reference_target_is_the_retain_models_own_value(tiny_model_dir, tmp_path):
    """The target read from a reference equals the metric of the reference model's own scoring
    run on the same rows (here the tiny model plays the retain model)."""
    from harness_ext.lm_eval_plugin.results import task_metrics
    from harness_ext.lm_eval_plugin.run import run_tasks
    from tofu_tasks.reference_files import reference_from_results, write_reference_file

    metadata = {"max_rows_per_set": 1, "generation_max_length": 40, "prompt_format": "plain",
                "embedding_model": "none", "nli_model": "none"}  # fmt: skip
    model_args = {"pretrained": str(tiny_model_dir)}
    results = run_tasks(model_args, ["tofu_forget01_unlearn"], metadata=metadata, device="cpu")
    rows, provenance = reference_from_results(results, {"model_args": model_args})
    reference = write_reference_file(tmp_path / "ref.json", rows, provenance)
    own = task_metrics(results, "tofu_forget01_unlearn")
    for metric in ("forget_truth_ratio", "retain_truth_ratio", "forget_rougeL_recall"):
        options = UnlearnConfig(
            model=str(tiny_model_dir), output_dir=str(tmp_path / "x"), **SETTINGS, **EVAL,
            select=metric, select_matching_reference=str(reference),
        )  # fmt: skip
        selection = dry_run(options)["evaluation"]["selection"]
        if selection["ideal"] == "retain":  # TOFU's forget truth ratio: the closest checkpoint
            assert selection["operator"] is None and selection["target"] is None
            assert selection["ideal_value"] == pytest.approx(own[metric], abs=1e-12), metric
            continue
        assert selection["target"] == pytest.approx(own[metric], abs=1e-12), metric
        assert selection["operator"] == (">=" if selection["higher_is_better"] else "<=")


def test_a_target_never_reached_ends_with_the_final_model_and_says_so(
    evaluated, tiny_model_dir, tmp_path, capfd
):
    from harness_ext.commands.cli import main

    output = tmp_path / "never"
    args = ["train", *CLI_SETTINGS, *CLI_EVAL, "--model", str(tiny_model_dir),
            "--output", str(output), "--select", "forget_prob<0"]  # fmt: skip
    assert main(args) == 0
    err = capfd.readouterr().err
    assert "WARNING: the selection target forget_prob<0 was never reached" in err
    selection = read_run_card(output)["selection"]
    assert (selection["reached"], selection["step"], selection["final_step"]) == (False, 4, 4)
    assert (
        selection["value"]
        == read_run_card(evaluated)["evaluation"]["history"][1]["metrics"]["forget_prob"]
    )
    assert_same_weights(output, checkpoint(evaluated, 4))


def test_an_interrupted_run_resumes_with_its_evaluations_and_kept_checkpoint(
    evaluated, tiny_model_dir, tmp_path, monkeypatch
):
    """Killed after step 2's checkpoint (which holds the evaluation and the kept copy), the
    rerun continues at step 3 and still outputs step 2's model."""
    from unlearn_methods.trainer import UnlearnTrainer

    original = UnlearnTrainer.training_step
    calls = {"n": 0}

    def crash_in_step_three(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # two micro-batches per step
            raise KeyboardInterrupt("simulated interruption")
        return original(self, *args, **kwargs)

    extra = dict(**EVAL, select="forget_prob<=1", stop_at_selection=False, save_steps=2)
    monkeypatch.setattr(UnlearnTrainer, "training_step", crash_in_step_three)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_model_dir, tmp_path / "resumed", **extra)
    monkeypatch.setattr(UnlearnTrainer, "training_step", original)
    output = run(tiny_model_dir, tmp_path / "resumed", **extra)
    card = read_run_card(output)
    assert eval_metrics(card) == eval_metrics(read_run_card(evaluated))
    assert card["selection"]["step"] == 2 and card["global_steps"] == 4
    assert_same_weights(output, checkpoint(evaluated, 2))


def test_a_run_interrupted_after_stopping_at_its_target_is_not_trained_on(
    evaluated, tiny_model_dir, tmp_path, monkeypatch
):
    """Stopped at step 2 (its checkpoint saved), then killed before the output was written: the
    rerun loads that checkpoint instead of training steps 3 and 4."""
    from unlearn_methods.trainer import UnlearnTrainer

    original = UnlearnTrainer.save_model

    def killed(self, *args, _internal_call=False, **kwargs):
        if not _internal_call:  # the output, not a checkpoint
            raise KeyboardInterrupt("simulated interruption")
        return original(self, *args, _internal_call=_internal_call, **kwargs)

    extra = dict(**EVAL, select="forget_prob<=1", save_steps=2)
    with monkeypatch.context() as patch:
        patch.setattr(UnlearnTrainer, "save_model", killed)
        with pytest.raises(KeyboardInterrupt):
            run(tiny_model_dir, tmp_path / "stopped", **extra)
    assert checkpoint(tmp_path / "stopped", 2).is_dir()
    output = run(tiny_model_dir, tmp_path / "stopped", **extra)
    card = read_run_card(output)
    assert card["global_steps"] == 2 and card["selection"]["stopped_early"] is True
    assert [r["step"] for r in card["evaluation"]["history"]] == [2]
    assert_same_weights(output, checkpoint(evaluated, 2))


def test_two_processes_give_the_metrics_of_one(
    evaluated, tiny_model_dir, tmp_path, launch_two_processes
):
    """DDP on two CPU processes (gloo), one example batch per rank and step instead of two
    micro-batches: rank 0 scores, the other waits; the same metrics at the same steps as one
    process, and best:forget_prob keeps the same checkpoint."""
    output = tmp_path / "ddp"
    done = launch_two_processes(
        "harness_ext.commands.cli", "train", *CLI_SETTINGS, *CLI_EVAL,
        "--model", str(tiny_model_dir), "--output", str(output), "--select", "best:forget_prob",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = read_run_card(evaluated), read_run_card(output)
    assert two["hyperparameters"]["world_size"] == 2
    assert [step for step, _ in eval_metrics(two)] == [2, 4]
    for (_, a), (_, b) in zip(eval_metrics(one), eval_metrics(two), strict=True):
        assert a.keys() == b.keys()
        for name in a:
            expected = pytest.approx(a[name], abs=1e-6) if isinstance(a[name], float) else a[name]
            assert b[name] == expected, name
    values = {step: m["forget_prob"] for step, m in eval_metrics(one)}
    best = min(values, key=values.get)
    assert (two["selection"]["rule"], two["selection"]["step"]) == ("best:forget_prob", best)
    assert_same_weights(output, checkpoint(evaluated, best))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--select", "forget_rougeL_recall<=0.4"], "--select needs --eval-every N"),
        (["--eval-every", "2", "--select", "forget_rouge<=0.4"],
         "unknown metric 'forget_rouge' in --select; the tasks report: forget_rougeL_recall"),
        (["--eval-every", "2", "--select", "forget_rougeL_recall=0.4"], "write METRIC<=VALUE"),
        (["--eval-every", "2", "--select", "best:model_utility"],
         "model_utility needs nli_model (an NLI model (entailment))"),
        (["--eval-every", "0"], "--eval-every must be a positive step count"),
        (["--eval-every", "2", "--eval-metadata", '{"max_row_per_set": 1}'],
         "did you mean max_rows_per_set?"),
        (["--eval-rows", "2"], "--eval-rows needs --eval-every N"),
    ],
)  # fmt: skip
def test_bad_selection_options_are_refused_before_training(
    tiny_model_dir, tmp_path, capsys, flags, message
):
    from harness_ext.commands.cli import main

    output = tmp_path / "out"
    args = ["train", *CLI_SETTINGS, "--model", str(tiny_model_dir), "--output", str(output)]
    assert main([*args, *flags]) == 2
    assert message in capsys.readouterr().err
    assert not output.exists()


def test_a_reference_without_the_scored_rows_is_refused(tiny_model_dir, tmp_path):
    docs = [{**d, "row": d["row"] + 1} for d in scored_docs()]  # other rows
    reference = write_reference(tmp_path / "other-rows.json", docs, lambda d: d["answer"])
    options = UnlearnConfig(
        model=str(tiny_model_dir), output_dir=str(tmp_path / "x"), **SETTINGS, **EVAL,
        select_matching_reference=str(reference),
    )  # fmt: skip
    with pytest.raises(ValueError, match="lacks forget_rougeL_recall on 1 of the 1 forget rows"):
        dry_run(options)


def test_forget_only_evaluations_and_the_choice_reach_the_leaderboard(
    evaluated, tiny_model_dir, tmp_path
):
    """Task options sets and truth_ratio: the evaluations score the forget set alone (the
    others read "N/A (no rows)") and only its ground-truth answers, giving the same ROUGE-L and
    probability as the full evaluation of the same weights; the selection still stops at the
    retain model's value, and a scoring run of the output carries the choice into the
    leaderboard (checkpoint column, matched-forgetting sentence)."""
    from harness_ext.commands.cli import main
    from harness_ext.workflows.score_inputs import MANIFEST
    from harness_ext.workflows.score_runs import completed_runs
    from harness_ext.workflows.table_cells import cell as fmt

    docs = [d for d in scored_docs() if d["set"] == "forget"]
    reference = write_reference(tmp_path / "retain.json", docs, lambda d: d["answer"])
    only_forget = {**EVAL["eval_metadata"], "sets": ["forget"], "truth_ratio": False}
    output = run(
        tiny_model_dir, tmp_path / "forget-only", **{**EVAL, "eval_metadata": only_forget},
        select_matching_reference=str(reference),
    )  # fmt: skip
    card = read_run_card(output)
    ((step, metrics),) = eval_metrics(card)
    (_, full), _ = eval_metrics(read_run_card(evaluated))  # the same weights at step 2
    assert step == 2
    for metric in ("forget_rougeL_recall", "forget_prob", "forget_token_entropy"):
        assert metrics[metric] == pytest.approx(full[metric], abs=1e-6), metric
    assert str(metrics["forget_truth_ratio"]).startswith("N/A (truth_ratio is off")
    assert str(metrics["forget_quality"]).startswith("N/A")
    assert str(metrics["retain_rougeL_recall"]).startswith("N/A (no rows")
    assert str(metrics["mia_loss_auc"]).startswith("N/A")  # no holdout scored
    assert card["selection"]["reached"] is True and card["selection"]["step"] == 2

    runs = tmp_path / "runs"
    metadata = json.dumps({"max_rows_per_set": 1, "generation_max_length": 40,
                           "embedding_model": "none", "nli_model": "none"})  # fmt: skip
    assert main(["score", str(output), "--prompt-format", "plain", "--metadata", metadata,
                 "--output", str(runs)]) == 0  # fmt: skip
    (scored,) = completed_runs(runs)
    selection = json.loads((scored / MANIFEST).read_text())["model"]["selection"]
    assert selection["reached"] is True and selection["step"] == 2
    assert selection["reference"] == "retain.json"  # the file's name, not a local path
    assert main(["leaderboard", str(runs), "--output", str(tmp_path / "board")]) == 0
    board = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    value = fmt(selection["value"])
    assert f"| step 2: {value} ≤ 1.0000 |" in board
    assert "Compared at matched forgetting" in board and "retain model's own value" in board
    csv = (tmp_path / "board" / "leaderboard.csv").read_text()
    assert f"step 2: {value} ≤ 1.0000" in csv
