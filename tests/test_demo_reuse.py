"""What `make demo` says up front about reusing the committed results, on made-up manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness_ext.provenance import cpu_model, package_versions
from harness_ext.workflows import demo_reuse


def committed(runs: Path, name: str, weights: str, **versions: str) -> None:
    folder = runs / f"{name.replace(' ', '_')}-run"
    folder.mkdir(parents=True)
    manifest = {
        "model": {"name": name, "fingerprint": {"weights_sha256": weights}},
        "versions": {**package_versions(), **versions},
        "hardware": {"cpu": cpu_model()},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_without_committed_results_it_says_everything_is_made(tmp_path):
    text = demo_reuse.outlook(tmp_path / "runs", 20, 5)
    assert text.startswith("No committed results") and "about 20 minutes" in text


def test_other_versions_are_named_with_the_time_from_nothing(tmp_path):
    runs = tmp_path / "runs"
    here = package_versions()["transformers"]
    other = "5.24.0" if here != "5.24.0" else "5.25.0"  # whatever is installed, another one
    committed(runs, "retain model", "a" * 64, transformers=other)
    text = demo_reuse.outlook(runs, 20, 5)
    assert f"transformers {here} vs {other}" in text and "nothing committed is reused" in text
    assert "about 20 minutes" in text
    note = demo_reuse.weights_check(runs, "retain model", "b" * 64)
    assert note.startswith("The retain model's weights differ from the committed run's")
    assert "aaaaaaaa" in note and f"transformers {here} vs {other}" in note


def test_same_versions_promise_reuse_when_the_weights_agree(tmp_path):
    runs = tmp_path / "runs"
    committed(runs, "target", "c" * 64)
    text = demo_reuse.outlook(runs, 20, 5)
    assert "same kind of CPU" in text and "about 5 minutes" in text
    assert demo_reuse.weights_check(runs, "target", "c" * 64) is None
    assert demo_reuse.weights_check(runs, "retain model", "d" * 64) is None  # not committed


@pytest.mark.parametrize(
    ("folder", "title", "files"),
    [
        ("demo", "lm-unlearn demo: SmolLM2-135M-Instruct unlearns forget01",
         ("LEADERBOARD.md", "leaderboard.csv", "robustness.csv")),
        ("lume-demo", "lm-unlearn demo: SmolLM2-135M-Instruct unlearns LUME's Task2 biographies",
         ("LEADERBOARD.md", "leaderboard.csv")),
    ],
)  # fmt: skip
def test_the_committed_leaderboard_is_what_the_code_builds_from_the_committed_runs(
    tmp_path, folder, title, files
):
    """`make leaderboard` rebuilds results/demo and results/lume-demo byte for byte: a change to
    the tables' code shows up here, and the committed files are rebuilt with it."""
    import shutil

    from harness_ext.workflows.leaderboard import build_leaderboard

    demo = Path(__file__).resolve().parents[1] / "results" / folder
    copy = tmp_path / folder
    shutil.copytree(demo, copy)
    build_leaderboard([copy / "runs"], copy, title=title)
    for name in files:
        assert (copy / name).read_text() == (demo / name).read_text(), name
