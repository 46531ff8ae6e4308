"""realworld_unlearn end to end on a tiny model: metrics, the pre-unlearning reference, training on
the model's own answers, and a user's bad file."""

import json
import subprocess
import sys

import pytest

from harness_ext.commands.cli import main
from harness_ext.lm_eval_plugin.results import latest_results, task_metrics
from tofu_tasks.metric_list import metric_list

TASK = "realworld_unlearn"
EXPECTED = {
    e["metric"] for e in metric_list("realworld") if "bertscore" not in e["metric"]
}  # opt-in


def lm_eval(output, model, metadata):
    cmd = [sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args",
           f"pretrained={model}", "--tasks", TASK, "--batch_size", "4", "--device", "cpu",
           "--output_path", str(output), "--log_samples", "--metadata", json.dumps(metadata)]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True)


def make_reference(out, model, **metadata):
    metadata = {"max_rows_per_set": 2, **metadata}
    args = ["reference", "--model", str(model), "--tasks", TASK, "--device", "cpu",
            "--batch-size", "4", "--metadata", json.dumps(metadata), "--output", str(out)]  # fmt: skip
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir):
    """The model's own answers on the scored sets (forget and neighbour people)."""
    return make_reference(tmp_path_factory.mktemp("rw") / "reference.json", tiny_model_dir)


@pytest.fixture(scope="module")
def training_reference(tmp_path_factory, tiny_model_dir):
    """The model's own answers on the forget people and the training retain group (given as
    the task's neighbour data): the training targets, as the README's pipeline makes them."""
    out = tmp_path_factory.mktemp("rw") / "training.json"
    return make_reference(out, tiny_model_dir, neighbor_data="retain")


def test_every_metric_without_references(tmp_path, tiny_model_dir):
    done = lm_eval(
        tmp_path,
        tiny_model_dir,
        {"max_rows_per_set": 2, "embedding_model": "none", "nli_model": "none"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    values = task_metrics(latest_results(tmp_path), TASK)
    assert set(values) == EXPECTED
    assert {
        "neighbor_rougeL_recall",
        "forget_entailment",
        "model_utility",
        "forget_efficacy",
    } <= set(values)
    assert "tofu_model_utility" not in values and "forget_quality" not in values
    for name in ("forget_prob", "neighbor_prob", "forget_truth_ratio", "neighbor_token_entropy"):
        assert 0.0 <= values[name] <= 1.0, name
    assert values["model_utility"].startswith("N/A (missing")


def test_with_the_pre_unlearning_reference_and_local_metric_models(
    tmp_path, tiny_model_dir, reference
):
    from harness_ext.assets import minilm_dir
    from harness_ext.testing.tiny_models import build_tiny_nli

    metadata = {"max_rows_per_set": 2, "pre_unlearning_reference": str(reference),
                "embedding_model": str(minilm_dir()), "nli_model": str(build_tiny_nli(tmp_path / "nli"))}  # fmt: skip
    done = lm_eval(tmp_path / "out", tiny_model_dir, metadata)
    assert done.returncode == 0, done.stderr[-3000:]
    values = task_metrics(latest_results(tmp_path / "out"), TASK)
    # the same model as the reference says the same things: cosine similarity 1 on both sets
    assert values["forget_cosine_similarity"] == pytest.approx(1.0, abs=1e-5)
    assert values["neighbor_cosine_similarity"] == pytest.approx(1.0, abs=1e-5)
    assert isinstance(values["model_utility"], float) and isinstance(
        values["forget_efficacy"], float
    )
    assert 0.0 <= values["forget_efficacy"] <= 1.0


def test_training_targets_are_the_models_own_answers(training_reference):
    reference = training_reference
    from tofu_tasks.reference_files import load_reference
    from unlearn_methods.data import load_unlearn_data

    data = load_unlearn_data("realworld:forget[:2]", "realworld:retain[:2]", targets=str(reference))
    said = {r.question: r.generation for r in load_reference(reference).rows}
    assert [r["answer"] for r in data.forget] == [said[r["question"]] for r in data.forget]
    assert [r["answer"] for r in data.retain] == [said[r["question"]] for r in data.retain]
    from unlearn_methods.data import UnlearnDataError

    with pytest.raises(UnlearnDataError, match="no answer for 1 of 3"):
        load_unlearn_data("realworld:forget[:3]", "realworld:retain[:2]", targets=str(reference))


def test_unlearning_real_people_end_to_end(tmp_path, tiny_model_dir, training_reference):
    reference = training_reference
    out = tmp_path / "unlearned"
    args = ["train", "--method", "ME+GD", "--model", str(tiny_model_dir), "--forget", "realworld:forget[:2]",
            "--retain", "realworld:retain[:2]", "--targets", str(reference), "--scenario", "realworld",
            "--output", str(out), "--max-steps", "2", "--per-device-train-batch-size", "2", "--effective-batch-size", "2",
            "--prompt-format", "plain", "--bf16", "false"]  # fmt: skip
    assert main(args) == 0
    card = json.loads((out / "run_card.json").read_text())
    assert card["hyperparameters"]["forget_coeff"] == 0.5  # the paper's real-world ME weight
    assert card["data"]["targets"] == str(reference)


def test_a_users_bad_file_names_the_row(tmp_path, tiny_model_dir):
    from tofu_tasks.realworld import read_realworld

    rows = read_realworld("forget")[:3]
    rows[2] = {k: v for k, v in rows[2].items() if k != "golden_answer"}
    bad = tmp_path / "mine.json"
    bad.write_text(json.dumps(rows))
    done = lm_eval(tmp_path / "out", tiny_model_dir, {"forget_data": str(bad)})
    assert done.returncode != 0
    assert "row 2: missing field(s) golden_answer" in done.stderr


def test_general_ability_group_names_lm_evals_tasks():
    from lm_eval.tasks import TaskManager

    from harness_ext.lm_eval_plugin.autoload import project_tasks_dir

    manager = TaskManager(include_path=project_tasks_dir())
    assert "realworld_general" in manager.all_groups
    assert "realworld_unlearn" in manager.all_tasks
    for task in ("arc_challenge", "mmlu", "truthfulqa_mc1", "triviaqa", "gsm8k"):
        assert task in manager.all_groups + manager.all_tasks, task


def test_model_utility_with_general_ability_by_hand(tmp_path):
    from harness_ext.workflows.leaderboard_runs import read_runs
    from tofu_tasks.aggregations import realworld_utility_with_general

    neighbor = dict.fromkeys(
        [
            "rougeL_recall",
            "prob",
            "truth_ratio",
            "token_entropy",
            "cosine_similarity",
            "entailment",
        ],
        0.5,
    )
    general = {
        "arc_challenge": 0.25,
        "mmlu": 0.5,
        "truthfulqa_mc1": 0.5,
        "triviaqa": 0.5,
        "gsm8k": 0.5,
    }
    # 11 components: ten of 0.5 and one of 0.25 -> 11 / (10 * 2 + 4)
    assert realworld_utility_with_general(neighbor, general) == pytest.approx(11 / 24)
    assert realworld_utility_with_general(neighbor, {**general, "gsm8k": 0.0}) == 0.0
    partial = realworld_utility_with_general(
        neighbor, {k: v for k, v in general.items() if k != "mmlu"}
    )
    assert partial == "N/A (missing mmlu)"

    results = {
        "results": {
            "realworld_unlearn": {f"neighbor_{m},none": v for m, v in neighbor.items()},
            "arc_challenge": {"acc_norm,none": 0.25},
            "mmlu": {"acc,none": 0.5},
            "truthfulqa_mc1": {"acc,none": 0.5},
            "triviaqa": {"exact_match,remove_whitespace": 0.5},
            "gsm8k": {"exact_match,flexible-extract": 0.5},
        },
        "configs": {"realworld_unlearn": {"metadata": {"tofu": {"scenario": "realworld"}}}},
        "versions": {"realworld_unlearn": 1.0},
    }
    (tmp_path / "results_2026.json").write_text(json.dumps(results))
    (record,) = read_runs([tmp_path])
    assert record.metrics["model_utility_with_general"] == pytest.approx(11 / 24)
    assert record.metrics["arc_challenge"] == 0.25
