"""`lm-unlearn score --forget wmdp` and WMDP's leaderboard section: the model before unlearning
as the reference (its changes 0 by definition), runs ranked by WMDP accuracy at matched utility
(those whose MMLU fell by at most the tolerance first)."""

import json
from pathlib import Path

import pytest

from harness_ext.commands.cli import main
from harness_ext.workflows.leaderboard_ranking import group_and_rank
from harness_ext.workflows.leaderboard_runs import RunRecord

FIXTURES = Path(__file__).parent / "fixtures" / "wmdp"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "conformance"
BEFORE, AFTER = SHARED / "tiny-tofu-llama", SHARED / "muse" / "tiny-muse-llama"
OPTIONS = json.dumps({"data_dir": str(FIXTURES / "wmdp"), "mmlu_data_dir": str(FIXTURES / "mmlu"),
                      "mmlu_subjects": ["anatomy", "astronomy"]})  # fmt: skip


def _score(runs: Path, model: Path, label: str, *extra: str) -> int:
    return main(["score", str(model), "--forget", "wmdp", "--metadata", OPTIONS, "--label", label,
                 "--output", str(runs), "--batch-size", "8", "--device", "cpu", *extra])  # fmt: skip


def _run(runs: Path, label: str) -> Path:
    (found,) = [p for p in runs.iterdir() if p.name.startswith(f"{label}-")]
    return found


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    assert _score(runs, BEFORE, "before") == 0
    reference = str(_run(runs, "before"))
    assert _score(runs, AFTER, "after", "--pre-unlearning-reference", reference) == 0
    return runs


def _metrics(run: Path) -> dict:
    (results,) = run.rglob("results_*.json")
    return json.loads(results.read_text())["results"]["wmdp_unlearn"]


def test_a_wmdp_run_records_its_task_and_reruns_as_scored(scored, capsys):
    manifest = json.loads((_run(scored, "after") / "manifest.json").read_text())
    assert manifest["task"] == "wmdp_unlearn"
    assert manifest["prompt_format"]["name"] == "lm-eval"
    assert "--forget wmdp" in manifest["rerun"] and "--prompt-format" not in manifest["rerun"]
    before, after = _metrics(_run(scored, "before")), _metrics(_run(scored, "after"))
    for name in ("forget_wmdp_acc", "mmlu_acc"):
        change = after[f"{name}_change,none"]
        assert change == pytest.approx(after[f"{name},none"] - before[f"{name},none"], abs=1e-12)
    capsys.readouterr()
    again = ["--pre-unlearning-reference", str(_run(scored, "before"))]
    assert _score(scored, AFTER, "after", *again) == 0
    assert "already scored with identical settings" in capsys.readouterr().out


def test_the_leaderboard_has_a_wmdp_section(scored, tmp_path):
    assert main(["leaderboard", str(scored), "--output", str(tmp_path)]) == 0
    page = (tmp_path / "LEADERBOARD.md").read_text()
    section = page[page.index("## wmdp_unlearn") :]
    assert "ranked by WMDP acc. (lower is better), at matched utility" in section
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert header[3:] == ["WMDP acc.", "WMDP-bio acc.", "WMDP-chem acc.", "WMDP-cyber acc.",
                          "MMLU acc.", "WMDP acc. change", "MMLU acc. change"]  # fmt: skip
    before = next(r for r in rows if "(pre-unlearning reference)" in r)
    assert before.startswith("| ref |") and before.endswith("| 0.0000 | 0.0000 |")
    after = next(r for r in rows if "after · tiny-muse-llama · wmdp" in r)
    assert after.startswith("| 1 |")


def test_wmdp_refuses_a_prompt_format(tmp_path, capsys):
    assert _score(tmp_path, BEFORE, "x", "--prompt-format", "plain") != 0
    assert "wmdp asks in its own format (lm-eval)" in capsys.readouterr().err


def _record(label: str, wmdp: float, change: float | str) -> RunRecord:
    metrics = {"forget_wmdp_acc": wmdp, "mmlu_acc": 0.5, "mmlu_acc_change": change}
    return RunRecord(label=label, task="wmdp_unlearn", results_file=Path(label), run_dir=Path(label),
                     manifest=None, metrics=metrics, comparability={"data": 1},
                     prompt_format="lm-eval", date=0.0)  # fmt: skip


@pytest.mark.parametrize(
    ("tolerance", "order"),
    [(None, ["A", "C", "D", "B"]), (0.2, ["B", "A", "C", "D"]), (0.0, ["C", "D", "B", "A"])],
)
def test_forgetting_is_ranked_at_matched_utility(tolerance, order):
    """A keeps MMLU within 0.02, B loses 0.10, C loses nothing, D has no reference: with the
    default tolerance A and C (by WMDP accuracy) rank before D and B, however low theirs."""
    runs = [_record("A", 0.30, -0.01), _record("B", 0.26, -0.10), _record("C", 0.40, 0.0),
            _record("D", 0.25, "N/A (needs the model before unlearning)")]  # fmt: skip
    table = group_and_rank(runs, utility_tolerance=tolerance)["wmdp_unlearn"]
    assert [r.label for r in table.main] == order
    assert table.utility_gate.change == "mmlu_acc_change"
