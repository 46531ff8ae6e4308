"""Metrics whose best value is the retain model's: declared once, and followed by the
leaderboard's ranking, checkpoint selection during training and the results.

The runs here are made up (results files with chosen numbers), so every expected order is
known by hand: privleak +125 (over-unlearned) never outranks -5 or +3; an AUC of 0.40 does not
beat 0.74 when the retain model's is 0.74; at matched forgetting the table ranks by utility.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from harness_ext.metrics.ideals import HIGHER, LOWER, RETAIN, ideal_of, parse_ranking
from harness_ext.workflows.leaderboard import build_leaderboard

TASK = "tofu_forget01_unlearn"
DATA = "d" * 64


def test_every_metric_declares_its_ideal():
    assert ideal_of("privleak").kind == RETAIN and ideal_of("privleak").fixed == 0.0
    for attack in ("loss", "zlib", "min_k", "min_k_plus_plus"):
        assert ideal_of(f"mia_{attack}_auc").kind == RETAIN
        assert ideal_of(f"mia_{attack}_auc").fixed is None  # the retain model's own AUC
    assert ideal_of("mia_reference_auc").fixed == 0.5
    assert ideal_of("forget_truth_ratio").kind == RETAIN
    for name in ("forget_rougeL_recall", "forget_prob", "forget_extraction_strength"):
        assert ideal_of(name).kind == LOWER
    for name in ("forget_quality", "tofu_model_utility", "retain_rougeL_recall"):
        assert ideal_of(name).kind == HIGHER
    assert parse_ranking("closest:forget_rougeL_recall") == (
        "forget_rougeL_recall",
        ideal_of("privleak").__class__(RETAIN),
    )


def test_lm_eval_gets_no_direction_where_closest_is_meant():
    from tofu_tasks.metric_list import metric_list, register

    flags = {e["metric"]: e["higher_is_better"] for e in metric_list()}
    assert flags["privleak"] is None and flags["mia_min_k_auc"] is None
    assert flags["forget_rougeL_recall"] is False and flags["tofu_model_utility"] is True
    register()  # lm-eval reads None as "no direction" (its own groups use it for mixed ones)
    from lm_eval.api.registry import is_higher_better

    assert is_higher_better("privleak") is None
    assert is_higher_better("tofu_model_utility") is True


# ---------------------------------------------------------------------- made-up runs
def write_run(
    root: Path,
    name: str,
    metrics: dict,
    retain_values: dict | None = None,
    selection: dict | None = None,
    settings: str | None = None,
    fq_reference: dict | None = None,
) -> Path:
    """An lm-eval results file (and a scoring manifest) with the given numbers."""
    folder = root / name
    folder.mkdir(parents=True)
    tofu = {
        "data_sha256": DATA,
        "rows_per_set": {"forget": 40, "holdout": 40},
        "options": {"generation_max_length": 200},
        "prompt_format": "plain",
        "retain_values": retain_values,
        "forget_quality_reference": fq_reference,
    }
    results = {
        "results": {TASK: {f"{k},none": v for k, v in metrics.items()}},
        "configs": {TASK: {"metadata": {"tofu": tofu}}},
        "versions": {TASK: 1},
        "date": 1.0,
    }
    (folder / "results_2026-12-06T00-00-00.json").write_text(json.dumps(results))
    manifest = {"name": name, "settings_sha256": settings or name}
    if selection:
        manifest["model"] = {"selection": selection}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def ranked_names(output: Path) -> list[str]:
    with (output / "leaderboard.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["rank"]]
    return [r["run"].split(" · ")[0] for r in sorted(rows, key=lambda r: int(r["rank"]))]


def test_privleak_ranks_by_closeness_to_zero(tmp_path):
    runs = tmp_path / "runs"
    for name, value in [("over-unlearned", 125.0), ("leaks", -5.0), ("close", 3.0)]:
        write_run(runs, name, {"privleak": value})
    board = build_leaderboard([runs], tmp_path / "out", rank_by="privleak")
    assert ranked_names(tmp_path / "out") == ["close", "leaks", "over-unlearned"]
    assert "best: 0, the retain model's value" in board.markdown
    assert "+125.0%" in board.markdown and "-5.0%" in board.markdown


def test_an_auc_ranks_by_closeness_to_the_retain_models_own(tmp_path):
    runs = tmp_path / "runs"
    retain = {"mia_min_k_auc": 0.74}
    write_run(runs, "separates-less", {"mia_min_k_auc": 0.40}, retain)
    write_run(runs, "like-retain", {"mia_min_k_auc": 0.74}, retain)
    write_run(runs, "leaks", {"mia_min_k_auc": 0.99}, retain)
    board = build_leaderboard([runs], tmp_path / "out", rank_by="mia_min_k_auc")
    assert ranked_names(tmp_path / "out") == ["like-retain", "leaks", "separates-less"]
    assert "best: the retain model's value (0.740)" in board.markdown


def test_the_retain_models_run_gives_the_ideal_when_runs_did_not_record_it(tmp_path):
    runs = tmp_path / "runs"
    reference = {"identity": "run:retain", "name": "retain"}
    write_run(runs, "retain", {"mia_min_k_auc": 0.74}, settings="retain")
    for name, value in [("low", 0.40), ("near", 0.70)]:
        write_run(runs, name, {"mia_min_k_auc": value}, fq_reference=reference)
    build_leaderboard([runs], tmp_path / "out", rank_by="mia_min_k_auc")
    assert ranked_names(tmp_path / "out") == ["near", "low"]


def test_ranking_by_an_auc_without_any_retain_value_is_refused(tmp_path):
    from harness_ext.workflows.ranking import RankingError

    runs = tmp_path / "runs"
    write_run(runs, "a", {"mia_min_k_auc": 0.4})
    write_run(runs, "b", {"mia_min_k_auc": 0.7})
    with pytest.raises(RankingError, match="needs the retain model's value"):
        build_leaderboard([runs], tmp_path / "out", rank_by="mia_min_k_auc")
    assert not (tmp_path / "out").exists()


def test_closest_ranks_forget_rouge_at_matched_forgetting(tmp_path):
    runs = tmp_path / "runs"
    retain = {"forget_rougeL_recall": 0.40}
    for name, value in [("forgot-most", 0.05), ("matched", 0.38), ("kept", 0.90)]:
        write_run(runs, name, {"forget_rougeL_recall": value}, retain)
    build_leaderboard([runs], tmp_path / "out", rank_by="closest:forget_rougeL_recall")
    assert ranked_names(tmp_path / "out") == ["matched", "forgot-most", "kept"]
    build_leaderboard([runs], tmp_path / "out2", rank_by="forget_rougeL_recall")
    assert ranked_names(tmp_path / "out2") == ["forgot-most", "matched", "kept"]


def test_at_matched_forgetting_the_table_ranks_by_utility(tmp_path):
    """Stopped at the retain model's forget ROUGE-L, the run that forgot most (highest FQ)
    but kept the least utility ranks last."""
    runs = tmp_path / "runs"
    rule = {"metric": "forget_rougeL_recall", "operator": "<=", "target": 0.397,
            "reference": "retain-run", "reached": True, "step": 8, "value": 0.39}  # fmt: skip
    write_run(runs, "GA", {"forget_quality": 0.77, "tofu_model_utility": 0.24}, selection=rule)
    write_run(runs, "ME", {"forget_quality": 0.01, "tofu_model_utility": 0.37}, selection=rule)
    write_run(runs, "NPO", {"forget_quality": 0.03, "tofu_model_utility": 0.28}, selection=rule)
    board = build_leaderboard([runs], tmp_path / "out")
    assert ranked_names(tmp_path / "out") == ["ME", "NPO", "GA"]
    assert "ranked by MU-9 (higher is better)" in board.markdown
    assert "a method cannot climb by forgetting less" in board.markdown
    # without matched forgetting the same runs rank by forget quality
    other = tmp_path / "other"
    for name, fq, mu in [("GA", 0.77, 0.24), ("ME", 0.01, 0.37)]:
        write_run(other, name, {"forget_quality": fq, "tofu_model_utility": mu})
    build_leaderboard([other], tmp_path / "out2")
    assert ranked_names(tmp_path / "out2") == ["GA", "ME"]


def test_columns_na_in_every_run_are_named_once_not_shown(tmp_path):
    runs = tmp_path / "runs"
    why = "N/A (no NLI model; pass nli_model)"
    for name, mu in [("a", 0.3), ("b", 0.4)]:
        write_run(runs, name, {"tofu_model_utility": mu, "forget_efficacy": why})
    board = build_leaderboard([runs], tmp_path / "out")
    header = next(line for line in board.markdown.splitlines() if line.startswith("| #"))
    assert "MU-9" in header and "FE" not in header
    assert (
        "Not shown, N/A in every run: FE (`forget_efficacy`): no NLI model; pass nli\\_model."
        in (board.markdown)
    )
    assert "- MU-9 (`tofu_model_utility`): harmonic mean" in board.markdown


# ---------------------------------------------------------------------- checkpoint selection
def evaluate_in_turn(rule, values: list[float]) -> int:
    """The step the training callback keeps when its evaluations give ``values``."""
    from unlearn_methods.evaluation import EvaluateDuringTraining
    from unlearn_methods.evaluation_plan import EvalPlan

    plan = EvalPlan(every=1, task=TASK, metadata={}, apply_chat_template=False, batch_size=1,
                    rule=rule)  # fmt: skip
    callback = EvaluateDuringTraining(plan)
    model = torch.nn.Linear(1, 1)
    for step, value in enumerate(values, 1):
        callback._select({"step": step, "metrics": {rule.metric: value}}, model)
    return callback.kept.step


def test_best_privleak_keeps_the_checkpoint_closest_to_zero():
    from unlearn_methods.selection import parse_rule

    rule = parse_rule("best:privleak")
    assert evaluate_in_turn(rule, [-95.0, 125.0, -5.0, 3.0, 40.0]) == 4
    assert rule.describe()["ideal"] == "retain" and rule.describe()["ideal_value"] == 0.0


def test_best_auc_keeps_the_checkpoint_closest_to_the_retain_models_auc():
    from unlearn_methods.selection import SelectionError, parse_rule

    rule = parse_rule("best:mia_min_k_auc", retain=lambda metric: 0.74)
    assert evaluate_in_turn(rule, [1.0, 0.40, 0.78, 0.55]) == 3
    with pytest.raises(SelectionError, match="retain_reference"):
        parse_rule("best:mia_min_k_auc")
    lower = parse_rule("best:forget_rougeL_recall")
    assert evaluate_in_turn(lower, [0.9, 0.2, 0.5]) == 2
    closest = parse_rule("closest:forget_rougeL_recall", retain=lambda metric: 0.4)
    assert evaluate_in_turn(closest, [0.9, 0.2, 0.45]) == 3
    assert closest.text == "closest:forget_rougeL_recall"


def test_retain_values_on_the_rows_of_a_run():
    """The retain model's values from its per-row numbers, on exactly the rows asked for."""
    from harness_ext.metrics import privacy
    from harness_ext.metrics.references import ReferenceRow, ScoredReference
    from harness_ext.metrics.retain_values import retain_values

    rows = (
        ReferenceRow("forget", "q0", "Paris", 1.0, 0, 1.0, {"min_k": 1.0}),
        ReferenceRow("forget", "q1", "Rome", 4.0, 1, 2.0, {"min_k": 3.0}),
        ReferenceRow("holdout", "h0", None, None, 360, 5.0, {"min_k": 2.0}),
    )
    reference = ScoredReference("made-up", "lm-eval-samples", "plain", rows)
    docs = [
        {"set": "forget", "row": 0, "question": "q0", "answer": "Paris"},
        {"set": "forget", "row": 1, "question": "q1", "answer": "Berlin"},
        {"set": "holdout", "row": 360, "question": "h0", "answer": "x"},
    ]
    values = retain_values(reference, docs)
    assert values["forget_rougeL_recall"] == pytest.approx(0.5)
    assert values["forget_prob"] == pytest.approx((math.exp(-1.0) + math.exp(-2.0)) / 2)
    assert values["forget_truth_ratio"] == pytest.approx((1.0 + 0.25) / 2)  # min(R, 1/R)
    # forget scores 1 and 3 against holdout 2: one of the two pairs ordered as members
    assert values["mia_min_k_auc"] == privacy.auc([1.0, 3.0], [2.0]) == 0.5
    assert values["privleak"] == 0.0
    only_first = retain_values(reference, [docs[0], docs[2]])
    assert only_first["mia_min_k_auc"] == 1.0
    assert only_first["mia_loss_auc"].startswith("N/A")
