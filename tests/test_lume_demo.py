"""`lm-unlearn demo --benchmark lume` in miniature: fine-tune a tiny model on a LUME slice, unlearn
at matched forgetting, score on exactly the rows learned (and a holdout never learned), rank."""

import json
from pathlib import Path

import pytest

from harness_ext.workflows.demo_lume import LumeDemoSettings, run_lume_demo
from harness_ext.workflows.score_runs import completed_runs

LUME = Path(__file__).resolve().parents[2] / "shared" / "data" / "lume"


@pytest.fixture(scope="module")
def demo(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("lume-demo")
    settings = LumeDemoSettings(
        model=str(tiny_model_dir), output=root / "results", cache=root / "cache",
        forget_biographies=2, retain_biographies=1, holdout_biographies=1, methods=("GA+GD",),
        finetune_epochs=1, unlearn_epochs=1, batch_size=6, max_new_tokens=8, eval_every=1,
        audit="relearn",
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LUME_DATA_DIR", str(LUME))
        return settings, run_lume_demo(settings)


def samples_of(run: Path) -> list[dict]:
    (file,) = run.rglob("samples_lume_unlearn*.jsonl")
    return [json.loads(line) for line in file.read_text().splitlines()]


def test_the_models_are_scored_on_the_rows_they_learned_and_ranked(demo, monkeypatch):
    from unlearn_methods.data import read_rows

    monkeypatch.setenv("LUME_DATA_DIR", str(LUME))
    settings, outcome = demo
    manifests = [json.loads((run / "manifest.json").read_text())
                 for run in completed_runs(settings.output / "runs")]  # fmt: skip
    scored = sorted(m["model"]["name"] for m in manifests if not m.get("attack"))
    assert scored == ["GA+GD", "retain model", "target"]  # the audit's runs besides
    learned = {split: {r["question"] for r in read_rows(settings.training_rows(split))}
               for split in ("forget", "retain")}  # fmt: skip
    # a biography: one sentence completion and five questions
    assert len(learned["forget"]) == 12 and len(learned["retain"]) == 6
    card = json.loads((outcome["target_run"] / "manifest.json").read_text())
    assert card["task"] == "lume_unlearn"
    scored = {}
    for sample in samples_of(outcome["target_run"]):
        scored.setdefault(sample["doc"]["set"], set()).add(sample["doc"]["question"])
    assert scored["forget"] == learned["forget"] and scored["retain"] == learned["retain"]
    holdout = {r["question"] for r in read_rows("lume:retain/Task2[6:12]")}
    assert scored["holdout"] == holdout and not holdout & learned["retain"]
    board = (settings.output / "LEADERBOARD.md").read_text()
    assert "## lume_unlearn" in board and "ranked by LUME task agg." in board
    assert "[GA+GD ·" in board and "(retain reference)" in board
    # the target, which no LUME metric takes as a reference, is known from GA+GD's run card
    target_row = next(line for line in board.splitlines() if "[target ·" in line)
    assert target_row.startswith("| ref |") and "(model before unlearning)" in target_row


def test_each_method_stops_at_the_retain_models_knowledge_of_the_forget_rows(demo):
    from harness_ext.workflows.leaderboard_runs import read_runs
    from unlearn_methods.train import read_run_card

    settings, outcome = demo
    retain_value = read_runs([outcome["retain_run"]])[0].number(settings.match_metric)
    card = read_run_card(outcome["models"]["GA+GD"])
    selection = card["selection"]
    assert selection["metric"] == settings.match_metric
    assert selection["target"] == pytest.approx(retain_value, abs=5e-5)
    assert card["evaluation"]["task"] == "lume_unlearn"
    assert card["evaluation"]["history"][0]["step"] == 1


def test_the_command_line_picks_the_benchmark_and_refuses_the_other_ones_options():
    from harness_ext.commands.arguments import DemoArguments

    settings = DemoArguments(benchmark="lume", biographies=3, no_matching=True).settings()
    assert isinstance(settings, LumeDemoSettings) and settings.holdout_biographies == 3
    assert settings.output == Path("results/lume-demo") and not settings.match_forgetting
    with pytest.raises(ValueError, match="--utility-rows: not an option of the lume demo"):
        DemoArguments(benchmark="lume", utility_rows=3).settings()
    with pytest.raises(ValueError, match="--biographies: not an option of the tofu demo"):
        DemoArguments(biographies=3).settings()
    with pytest.raises(ValueError, match="--benchmark must be tofu or lume"):
        DemoArguments(benchmark="muse").settings()


def test_the_audit_relearns_half_the_forget_biographies_and_scores_the_others(demo):
    """`lm-unlearn audit --forget lume` relearns the first forget biography (its six rows, in
    LUME's prompt format), on the unlearned model and on the retain model, and scores the
    second one: before (the unlearned model's run, aggregated on those rows) and after."""
    settings, outcome = demo
    report = json.loads((settings.output / "audit" / "GA_GD" / "audit.json").read_text())
    (attack,) = report["attacks"]
    assert attack["settings"]["trained_on"] == "lume:forget/Task2[0:6]"
    assert attack["settings"]["scored_rows"] == "6:12" and attack["scored"] == "rows 6:12"
    assert attack["control"]["name"].startswith("retain model")
    from harness_ext.assets import cache_dir

    # the attacked models' folder (the cache's), named portably in the report
    relearned = cache_dir() / "audit" / attack["model"].removeprefix("local:")
    card = json.loads((relearned / "finetune_card.json").read_text())
    assert card["prompt_format"] == "lume" and card["rows"] == 6
    after = attack["after"]["metrics"]["forget_qa_rougeL_recall"]
    assert isinstance(after, float) and 0.0 <= after <= 1.0
