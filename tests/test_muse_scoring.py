"""`lm-unlearn score --forget muse-news` and the leaderboard with MUSE and TOFU runs side by side.

The conformance kits' tiny models: MUSE's retain model is scored first and becomes the target's
retain reference (privleak against its Min-K% AUC; the leaderboard shows it as the reference,
its privleak 0 by definition), and a TOFU run sits in its own section of the same leaderboard.
"""

import json
from pathlib import Path

import pytest

from harness_ext.commands.cli import main

SHARED = Path(__file__).resolve().parents[2] / "shared"
MUSE_KIT = SHARED / "conformance" / "muse"
NEWS = MUSE_KIT / "data" / "muse-bench" / "MUSE-News"
TOFU_MODEL = SHARED / "conformance" / "tiny-tofu-llama"


def _score(runs: Path, *args: str) -> int:
    return main(["score", *args, "--output", str(runs), "--batch-size", "8", "--device", "cpu"])


def _run_dir(runs: Path, label: str) -> Path:
    (found,) = [p for p in runs.iterdir() if p.name.startswith(f"{label}-")]
    return found


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    muse = ["--forget", "muse-news", "--metadata", json.dumps({"data_dir": str(NEWS)})]
    assert _score(runs, str(MUSE_KIT / "tiny-muse-llama-retain"), *muse, "--label", "retain") == 0
    reference = str(_run_dir(runs, "retain"))
    assert _score(runs, str(MUSE_KIT / "tiny-muse-llama"), *muse, "--label", "target",
                  "--reference", reference) == 0  # fmt: skip
    tofu = {"max_rows_per_set": 2, "embedding_model": "none", "nli_model": "none"}
    assert _score(runs, str(TOFU_MODEL), "--forget", "forget01", "--label", "tofu-model",
                  "--metadata", json.dumps(tofu)) == 0  # fmt: skip
    return runs


def test_a_muse_run_records_its_task_and_reruns_as_scored(scored, capsys):
    manifest = json.loads((_run_dir(scored, "target") / "manifest.json").read_text())
    assert manifest["task"] == "muse_news_unlearn"
    assert manifest["prompt_format"]["name"] == "muse"
    assert "--forget muse-news" in manifest["rerun"] and "--prompt-format" not in manifest["rerun"]
    reference = str(_run_dir(scored, "retain"))
    again = [str(MUSE_KIT / "tiny-muse-llama"), "--forget", "muse-news", "--label", "target",
             "--metadata", json.dumps({"data_dir": str(NEWS)}), "--reference", reference]  # fmt: skip
    capsys.readouterr()
    assert _score(scored, *again) == 0
    assert "already scored with identical settings" in capsys.readouterr().out


def test_the_leaderboard_shows_muse_and_tofu_side_by_side(scored, tmp_path):
    assert main(["leaderboard", str(scored), "--output", str(tmp_path)]) == 0
    page = (tmp_path / "LEADERBOARD.md").read_text()
    muse, tofu = page.index("## muse_news_unlearn"), page.index("## tofu_forget01_unlearn")
    section = page[muse:tofu] if muse < tofu else page[muse:]
    assert "ranked by privleak (best: 0, the retain model's value)" in section
    assert "privleak against the retain reference: retain" in section
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert header[3:6] == [
        "forget verbmem ROUGE-L F1", "forget knowmem ROUGE-L F1", "retain knowmem ROUGE-L F1"
    ]  # fmt: skip
    target = next(r for r in rows if "target · tiny-muse-llama · muse-news" in r)
    retain = next(r for r in rows if "(retain reference)" in r)
    assert target.startswith("| 1 |") and retain.startswith("| ref |")
    # the kit's open-unlearning values: 0.9713 / 0.8858 / 0.9259; privleak -100 % (AUC 1.0)
    assert "| 0.9713 | 0.8858 | 0.9259 | -100.0% |" in target
    assert "| 0.1048 | 0.1256 | 0.9259 | +0.0% |" in retain
    assert "MU-9" in page[tofu:] and "tofu-model" in page[tofu:]


def test_muse_refuses_what_does_not_apply(tmp_path, capsys):
    model = str(MUSE_KIT / "tiny-muse-llama")
    assert _score(tmp_path, model, "--forget", "muse-news", "--prompt-format", "plain") != 0
    assert "muse-news asks in its own format (muse)" in capsys.readouterr().err
    options = json.dumps({"data_dir": str(NEWS), "forget_texts": "knowmem/forget_qa"})
    assert _score(tmp_path, model, "--forget", "muse-news", "--metadata", options) != 0
    assert "forget_texts must be CONFIG/SPLIT of a text config" in capsys.readouterr().err
