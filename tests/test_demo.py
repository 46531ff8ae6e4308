"""`make demo` in miniature: the whole loop (finetune, train, score, leaderboard) on a tiny model,
then a second run that reuses every model and score."""

import json

import pytest

from harness_ext.workflows.demo import DemoSettings, run_demo
from harness_ext.workflows.score_inputs import MANIFEST
from harness_ext.workflows.score_runs import completed_runs


def tiny_demo(root, model_dir, methods, **more) -> DemoSettings:
    """The demo's loop, sized for the tiny model: a few rows, one epoch, two forget rows scored
    after each unlearning step, no metric models, no audit unless asked for."""
    return DemoSettings(
        model=str(model_dir),
        output=root / "results",
        cache=root / "cache",
        methods=methods,
        retain_rows=2,
        utility_rows=2,
        forget_rows=4,
        finetune_epochs=1,
        unlearn_epochs=1,
        batch_size=8,
        unlearn_batch_size=8,
        eval_rows=2,
        metadata={"embedding_model": "none", "nli_model": "none"},
        **{"audit": None, **more},
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory, tiny_model_dir):
    settings = tiny_demo(tmp_path_factory.mktemp("demo"), tiny_model_dir, ("ME+GD", "GA+GD"))
    return settings, run_demo(settings)


def test_every_model_is_scored_and_ranked(demo):
    settings, outcome = demo
    runs = completed_runs(settings.output / "runs")
    assert len(runs) == 2 + len(settings.methods)  # retain model, target, one per method
    for name in ("LEADERBOARD.md", "leaderboard.csv", "leaderboard.html"):
        assert (settings.output / name).is_file()
    board = (settings.output / "LEADERBOARD.md").read_text()
    assert board.count("| [") == len(runs)  # all comparable: one table


def test_rows_say_what_each_model_is_and_mark_the_references(demo):
    settings, _ = demo
    base = settings.model.rstrip("/").rsplit("/", 1)[-1]
    rows = [
        line for line in (settings.output / "LEADERBOARD.md").read_text().splitlines()
        if line.startswith("| ") and "[" in line
    ]  # fmt: skip
    names = [row.split("[", 1)[1].split("]", 1)[0] for row in rows]
    # the unlearned models are ranked; the references follow them, unranked
    assert {f"ME+GD · {base} · forget01", f"GA+GD · {base} · forget01"} == set(names[:2])
    assert [row.split(" | ")[0] for row in rows] == ["| 1", "| 2", "| ref", "| ref"]
    assert names[2:] == [
        f"retain model · {base} · forget01 (retain reference)",
        f"target · {base} · forget01 (pre-unlearning reference)",
    ]
    retain_row = rows[2].split(" | ")
    assert retain_row[0] == "| ref" and retain_row[4] == "1.0000"  # FQ against itself


def test_methods_are_stopped_at_the_retain_models_forgetting_and_the_board_says_so(demo):
    """Matched forgetting: every method is scored on the forget set every two steps and stops
    at the retain model's forget ROUGE-L (on the rows scored during training); the leaderboard
    says so and gives each run's step."""
    from unlearn_methods.train import read_run_card

    settings, outcome = demo
    board = (settings.output / "LEADERBOARD.md").read_text()
    assert "Compared at matched forgetting" in board and "| checkpoint |" in board
    for method, model in outcome["models"].items():
        card = read_run_card(model)
        selection, history = card["selection"], card["evaluation"]["history"]
        assert selection["rule"].startswith("forget_rougeL_recall<=") and selection["reference"]
        every = settings.eval_every  # 2 by default: steps 2, 4, 6, ...
        steps = [every * k for k in range(1, len(history) + 1)]
        assert [r["step"] for r in history] == steps, method
        assert card["evaluation"]["task_options"]["sets"] == ["forget"]
        if selection["reached"]:  # stopped at the first step that reached the target
            values = [r["metrics"]["forget_rougeL_recall"] for r in history]
            assert values[-1] <= selection["target"] < min(values[:-1], default=2), method


def test_unlearned_models_are_scored_against_both_references(demo):
    settings, outcome = demo
    manifests = [
        json.loads((r / MANIFEST).read_text()) for r in completed_runs(settings.output / "runs")
    ]
    unlearned = [m for m in manifests if m["references"]["pre_unlearning"]]
    assert len(unlearned) == len(settings.methods)
    for manifest in unlearned:
        # paths in a run's files are relative to the results folder holding the runs
        assert manifest["references"]["retain"] == outcome["retain_run"].name
        assert manifest["references"]["pre_unlearning"] == outcome["target_run"].name
        assert manifest["prompt_format"]["name"] == "plain"
    for model in outcome["models"].values():
        card = json.loads((model / "run_card.json").read_text())
        assert card["data"]["retain_split"] == "retain_perturbed[:2]"
        assert card["data"]["retain_rows"] == 2


def test_a_second_run_reuses_models_and_scores(demo, capsys):
    settings, outcome = demo
    before = completed_runs(settings.output / "runs")
    again = run_demo(settings)
    printed = capsys.readouterr().out
    assert printed.count("cached: ") == 2 + len(settings.methods)
    assert printed.count("already scored with identical settings") == 2 + len(settings.methods)
    assert completed_runs(settings.output / "runs") == before
    assert again["models"] == outcome["models"]


def test_an_earlier_run_of_the_same_model_is_replaced_not_listed_twice(demo, capsys):
    """A committed run made elsewhere (other weights or settings) gives way to the new one."""
    import shutil

    settings, outcome = demo
    runs = settings.output / "runs"
    stale = runs / "retain_model-elsewhere-forget01-000000000000"
    shutil.copytree(outcome["retain_run"], stale)
    manifest = json.loads((stale / MANIFEST).read_text())
    manifest["settings_sha256"] = "0" * 64
    (stale / MANIFEST).write_text(json.dumps(manifest))
    run_demo(settings)
    assert "removed" in capsys.readouterr().out
    assert not stale.exists()
    assert len(completed_runs(runs)) == 2 + len(settings.methods)
    board = (settings.output / "LEADERBOARD.md").read_text()
    assert board.count("| [") == 2 + len(settings.methods)


def test_the_demo_audits_its_unlearned_models(tmp_path, tiny_model_dir):
    """`lm-unlearn demo --audit`: every unlearned model attacked, the attacked runs shown in the
    leaderboard's robustness table and kept out of its ranking."""
    settings = tiny_demo(tmp_path, tiny_model_dir, ("GA+GD",), audit="quantize,paraphrase")
    run_demo(settings)
    table = (settings.output / "audit" / "GA_GD" / "audit.md").read_text()
    for attack in ("quantize-8bit", "quantize-4bit", "paraphrase"):
        assert attack in table
    board = (settings.output / "LEADERBOARD.md").read_text()
    assert "obustness" in board
    ranked = completed_runs(settings.output / "runs")
    manifests = [json.loads((run / MANIFEST).read_text()) for run in ranked]
    assert sum("attack" in m for m in manifests) >= 3  # the attacked runs stay beside the others
    assert "1 comparable runs ranked" in board  # GA+GD; the retain model and target are refs
