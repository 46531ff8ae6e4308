"""`make demo` in miniature: the whole loop (finetune, train, score, leaderboard) on a tiny model,
then a second run that reuses every model and score."""

import json

import pytest

from harness_ext.demo import DemoSettings, run_demo
from harness_ext.score import MANIFEST, completed_runs


@pytest.fixture(scope="module")
def demo(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("demo")
    settings = DemoSettings(
        model=str(tiny_model_dir),
        output=root / "results",
        cache=root / "cache",
        methods=("ME+GD", "GA+GD"),
        retain_rows=2,
        utility_rows=2,
        forget_rows=4,
        finetune_epochs=1,
        unlearn_epochs=1,
        batch_size=8,
        metadata={"embedding_model": "none", "nli_model": "none"},
    )
    return settings, run_demo(settings)


def test_every_model_is_scored_and_ranked(demo):
    settings, outcome = demo
    runs = completed_runs(settings.output / "runs")
    assert len(runs) == 2 + len(settings.methods)  # retain model, target, one per method
    for name in ("LEADERBOARD.md", "leaderboard.csv", "leaderboard.html"):
        assert (settings.output / name).is_file()
    board = (settings.output / "LEADERBOARD.md").read_text()
    assert board.count("| [") == len(runs)  # all comparable: one table


def test_unlearned_models_are_scored_against_both_references(demo):
    settings, outcome = demo
    manifests = [
        json.loads((r / MANIFEST).read_text()) for r in completed_runs(settings.output / "runs")
    ]
    unlearned = [m for m in manifests if m["references"]["pre_unlearning"]]
    assert len(unlearned) == len(settings.methods)
    for manifest in unlearned:
        assert manifest["references"]["retain"] == str(outcome["retain_run"])
        assert manifest["references"]["pre_unlearning"] == str(outcome["target_run"])
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
