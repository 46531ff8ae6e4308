"""`lm-unlearn audit --forget muse-news`: relearning on part of the forget corpus (on the
unlearned model and on the retain model as control) and 8-bit weights, scored on MUSE's verbatim
and knowledge forget sets, against the model before unlearning.

The unlearned model is the kit's target after 13 steps of GA+GD on the forget corpus: its
verbatim memory of the forget passages falls, and relearning half of the forget documents brings
it back, far beyond what the same relearning teaches the retain model."""

import json
from pathlib import Path

import pytest
import torch

from harness_ext.commands.cli import main
from harness_ext.metrics.recovery import recovery
from tests.test_muse_scoring import MUSE_KIT, NEWS
from unlearn_methods.config import UnlearnConfig
from unlearn_methods.train import train

TARGET, RETAIN = MUSE_KIT / "tiny-muse-llama", MUSE_KIT / "tiny-muse-llama-retain"
OPTIONS = json.dumps({"data_dir": str(NEWS), "max_rows_per_set": 5})
VERBMEM = "forget_verbmem_rougeL_f1"
FORGET_METRICS = {VERBMEM, "forget_knowmem_rougeL_f1", "forget_extraction_strength",
                  "forget_exact_memorization"}  # fmt: skip


def _score(runs: Path, model: Path, label: str) -> Path:
    assert main(["score", str(model), "--forget", "muse-news", "--metadata", OPTIONS, "--label",
                 label, "--output", str(runs), "--batch-size", "8", "--device", "cpu"]) == 0  # fmt: skip
    (run,) = [p for p in runs.iterdir() if p.name.startswith(f"{label}-")]
    return run


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """The unlearned model and the target scored as a user would first, then the audit."""
    work = tmp_path_factory.mktemp("muse-audit")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        unlearned = train(UnlearnConfig(
            method="GA+GD", model=str(TARGET), output_dir=str(work / "unlearned"),
            forget="muse-news:forget", muse_data_dir=str(NEWS), max_length=128, max_steps=13,
            learning_rate=1e-3, per_device_train_batch_size=4, effective_batch_size=4,
            warmup_steps=0, bf16=False, disable_tqdm=True,
        ))  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    runs = work / "runs"
    runs.mkdir()
    usual = _score(runs, unlearned, "unlearned")
    target = _score(runs, TARGET, "target")
    command = ["audit", str(unlearned), "--forget", "muse-news", "--metadata", OPTIONS,
               "--label", "unlearned", "--target", str(target), "--control", str(RETAIN),
               "--attacks", "relearn,quantize", "--bits", "8", "--relearn-lr", "1e-3",
               "--runs", str(runs), "--output", str(work / "audit"),
               "--models-dir", str(work / "models"), "--batch-size", "8", "--device", "cpu"]  # fmt: skip
    assert main(command) == 0
    report = json.loads((work / "audit" / "audit.json").read_text())
    return {"report": report, "usual": usual, "target": target, "runs": runs, "work": work}


def _metrics(run: Path) -> dict:
    (results,) = run.rglob("results_*.json")
    return json.loads(results.read_text())["results"]["muse_news_unlearn"]


def _rows(report: dict, variant: str) -> dict[str, dict]:
    return {r["metric"]: r for r in report["rows"] if r["variant"] == variant}


def test_before_and_target_come_from_the_runs_already_made(audited):
    report, usual, target = audited["report"], audited["usual"], audited["target"]
    usual_metrics, target_metrics = _metrics(usual), _metrics(target)
    for attack in report["attacks"]:
        before = attack["before"]
        assert before["run"] == usual.name  # no second scoring of the unlearned model
        assert before["note"].startswith("forget verbmem and knowmem sets: aggregated")
        assert set(before["metrics"]) == FORGET_METRICS
        for name, value in before["metrics"].items():  # every forget row: the run's own value
            assert value == pytest.approx(usual_metrics[f"{name},none"], abs=1e-12)
            assert attack["target"]["metrics"][name] == pytest.approx(
                target_metrics[f"{name},none"], abs=1e-12
            )
    # the kit's target memorised the forget passages; 13 steps of GA+GD took much of it away
    rows = _rows(report, "relearn")
    assert rows[VERBMEM]["target"] > 0.9 > 0.6 > rows[VERBMEM]["before"]


def test_relearning_half_the_forget_documents_brings_the_verbatim_memory_back(audited):
    report, work = audited["report"], audited["work"]
    (relearn,) = [a for a in report["attacks"] if a["variant"] == "relearn"]
    assert relearn["settings"]["trained_on"] == "muse-news:forget[0:5]"  # 5 of the 10 documents
    card = json.loads(next((work / "models").glob("unlearned-relearn-*/finetune_card.json"))
                      .read_text())  # fmt: skip
    assert card["rows"] == 5 and card["global_steps"] == 10
    row = _rows(report, "relearn")[VERBMEM]
    after = _metrics(work / "runs" / relearn["after"]["run"])[f"{VERBMEM},none"]
    assert row["after"] == pytest.approx(after, abs=1e-12)
    assert row["recovery"] == pytest.approx(recovery(row["before"], row["after"], row["target"]))
    # Measured: 0.47 -> 0.98 (recovery 1.0); the retain model, relearning the same documents,
    # gains 0.05: what came back is the unlearned model's own memory, not what relearning teaches
    assert row["recovery"] > 0.8
    assert row["control_gain"] < 0.2 < row["difference"]
    assert row["difference"] == pytest.approx(row["gain"] - row["control_gain"])


def test_quantising_the_weights_is_scored_on_the_same_rows(audited):
    report = audited["report"]
    (quantized,) = [a for a in report["attacks"] if a["variant"] == "quantize-8bit"]
    assert quantized["settings"]["bits"] == 8
    manifest = json.loads((audited["runs"] / quantized["after"]["run"] / "manifest.json")
                          .read_text())  # fmt: skip
    assert manifest["task"] == "muse_news_unlearn" and manifest["attack"]["name"] == "quantize"
    model = audited["work"] / "audit" / quantized["model"]  # written relative to the table
    config = json.loads((model / "config.json").read_text())
    assert config["quantization_config"]["load_in_8bit"] is True
    assert set(_rows(report, "quantize-8bit")) == FORGET_METRICS


def test_the_leaderboard_shows_the_muse_audit(audited, tmp_path):
    assert main(["leaderboard", str(audited["runs"]), "--output", str(tmp_path)]) == 0
    page = (tmp_path / "LEADERBOARD.md").read_text()
    section = page[page.index("## Robustness") :]
    assert "forget verbmem ROUGE-L F1: before → after" in section
    relearn = next(line for line in section.splitlines() if "| relearn (forget documents" in line)
    assert "unlearned · tiny-muse-llama · muse-news" in relearn


def test_what_does_not_apply_to_muse_is_refused(tmp_path, capsys):
    base = ["audit", str(TARGET), "--forget", "muse-news", "--metadata", OPTIONS,
            "--output", str(tmp_path / "audit"), "--runs", str(tmp_path / "runs")]  # fmt: skip
    assert main([*base, "--attacks", "paraphrase"]) != 0
    assert "MUSE's data has no rephrased questions" in capsys.readouterr().err
    assert main([*base, "--attacks", "relearn", "--relearn-split", "other-authors"]) != 0
    assert "muse-news relearns forget text" in capsys.readouterr().err
    assert main([*base, "--attacks", "relearn", "--relearn-rows", "5:20"]) != 0
    assert "within the 10 forget documents" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # refused before any work
