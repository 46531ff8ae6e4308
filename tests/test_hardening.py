"""Resume that never continues the wrong run, and a leaderboard that no run name can break.

One test per repro: a training run killed while writing a checkpoint, an interrupted run rerun
with other settings, two runs into one folder, a prompt format given as a task option, a
reference in another prompt format, hostile run names, unreadable run files, file permissions,
a truncated weights file, an adapter on a base of another family, a reference that is a list.
"""

import csv
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness_ext.commands.cli import main
from harness_ext.workflows.leaderboard import build_leaderboard
from harness_ext.workflows.score_runs import completed_runs

TRAIN = ["--method", "GA+GD", "--forget", "forget01", "--max-steps", "6", "--save-steps", "2",
         "--per-device-train-batch-size", "4", "--effective-batch-size", "4", "--max-length", "96",
         "--prompt-format", "plain", "--bf16", "false"]  # fmt: skip
NONE = json.dumps({"embedding_model": "none", "nli_model": "none"})
FAST = ["--max-rows-per-set", "1", "--batch-size", "4", "--device", "cpu", "--metadata", NONE]

KILL_WHILE_WRITING_CHECKPOINT_4 = """
import os, signal, sys
from transformers.trainer_callback import TrainerState

original = TrainerState.save_to_json
def save_to_json(self, path):
    if self.global_step == 4:  # weights, optimiser and RNG state written; the state only begun
        open(path, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    original(self, path)
TrainerState.save_to_json = save_to_json
from harness_ext.commands.cli import main
sys.exit(main(sys.argv[1:]))
"""


def train_args(model, output, *extra):
    return ["train", "--model", str(model), "--output", str(output), *TRAIN, *extra]


def test_a_checkpoint_written_in_part_is_skipped_and_reported(tmp_path, tiny_model_dir, capsys):
    from safetensors.torch import load_file

    killed = tmp_path / "killed"
    done = subprocess.run(
        [sys.executable, "-c", KILL_WHILE_WRITING_CHECKPOINT_4, *train_args(tiny_model_dir, killed)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == -9, done.stderr[-2000:]
    half = killed / "checkpoints" / "checkpoint-4"
    assert (half / "trainer_state.json").read_text() == ""  # what the kill left
    assert main(train_args(tiny_model_dir, killed)) == 0
    printed = capsys.readouterr().out
    assert "skipped" in printed and "checkpoint-4: written only in part" in printed
    assert "resuming from" in printed and "checkpoint-2" in printed
    assert main(train_args(tiny_model_dir, tmp_path / "straight")) == 0
    resumed = load_file(killed / "model.safetensors")
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    assert all((resumed[k] == straight[k]).all() for k in straight)


def test_a_rerun_with_other_settings_does_not_continue_the_interrupted_run(
    tmp_path, tiny_model_dir, capsys
):
    output = tmp_path / "run"
    interrupted = output / "checkpoints" / "checkpoint-2"
    done = subprocess.run(
        [sys.executable, "-c", KILL_WHILE_WRITING_CHECKPOINT_4, *train_args(tiny_model_dir, output)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == -9 and interrupted.is_dir()
    assert main(train_args(tiny_model_dir, output, "--learning-rate", "3e-4")) == 2
    error = capsys.readouterr().err
    assert "other settings" in error and "learning_rate" in error and "--overwrite" in error
    assert main(train_args(tiny_model_dir, output, "--method", "NPO+GD")) == 2
    assert "method" in capsys.readouterr().err
    assert interrupted.is_dir()  # refused: nothing touched
    assert main(train_args(tiny_model_dir, output, "--learning-rate", "3e-4", "--overwrite")) == 0
    card = json.loads((output / "run_card.json").read_text())
    assert card["hyperparameters"]["learning_rate"] == 3e-4


def test_a_second_run_into_the_same_folder_refuses(tmp_path, tiny_model_dir, capsys):
    output = tmp_path / "run"
    output.mkdir()
    with open(output / ".lock", "a+") as held:  # another run holds the folder
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main(train_args(tiny_model_dir, output)) == 2
    error = capsys.readouterr().err
    assert "another lm-unlearn run is writing to" in error and "Traceback" not in error
    assert [p.name for p in output.iterdir()] == [".lock"]


def without_chat_template(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    config = json.loads((target / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (target / "tokenizer_config.json").write_text(json.dumps(config))
    (target / "chat_template.jinja").unlink(missing_ok=True)
    return target


def prompts_of(run: Path) -> list[str]:
    (samples,) = run.rglob("samples_*.jsonl")
    return [json.loads(x)["arguments"]["gen_args_0"]["arg_0"] for x in samples.open()]


def test_a_prompt_format_given_as_a_task_option_is_honoured(tmp_path, tiny_model_dir):
    model = without_chat_template(tiny_model_dir, tmp_path / "plain-model")
    metadata = json.dumps(
        {"prompt_format": "llama2", "embedding_model": "none", "nli_model": "none"}
    )
    args = ["score", str(model), "--output", str(tmp_path / "runs"), "--max-rows-per-set", "1",
            "--batch-size", "4", "--device", "cpu", "--metadata", metadata]  # fmt: skip
    assert main(args) == 0
    (run,) = completed_runs(tmp_path / "runs")
    assert json.loads((run / "manifest.json").read_text())["prompt_format"]["name"] == "llama2"
    assert all(p.startswith("[INST] ") for p in prompts_of(run))
    conflicting = [*args[:-1], json.dumps({"prompt_format": "phi"}), "--prompt-format", "plain"]
    assert main(conflicting) == 2


def test_a_samples_file_of_another_prompt_format_is_refused_as_reference(
    tmp_path, tiny_model_dir, capsys
):
    model = without_chat_template(tiny_model_dir, tmp_path / "plain-model")
    runs = tmp_path / "runs"
    assert main(["score", str(model), "--output", str(runs), "--prompt-format", "phi", *FAST]) == 0
    (run,) = completed_runs(runs)
    (samples,) = run.rglob("samples_*.jsonl")
    alone = tmp_path / "alone" / samples.name  # a samples file without its results file
    alone.parent.mkdir()
    shutil.copy(samples, alone)
    args = ["score", str(model), "--output", str(tmp_path / "other"), *FAST,
            "--reference", str(alone)]  # fmt: skip
    assert main([*args, "--prompt-format", "plain"]) != 0
    assert "prompt format 'phi'" in capsys.readouterr().err
    assert main([*args, "--prompt-format", "phi"]) == 0  # the same format: accepted


@pytest.fixture(scope="module")
def scored(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("hostile")
    assert main(["score", str(tiny_model_dir), "--output", str(root / "runs"), *FAST]) == 0
    (run,) = completed_runs(root / "runs")
    return run


HOSTILE = {
    "javascript:alert(1)": "javascript:alert(1)",
    "pipes": "a | b | c",
    "html": "<img src=x onerror=alert(1)>",
    "formula": '=HYPERLINK("http://evil","x")',
    "dollars": "costs $5 and $6",
}


def test_no_run_name_breaks_the_leaderboard(tmp_path, scored):
    runs = tmp_path / "runs"
    for folder, name in HOSTILE.items():
        copy = runs / folder
        shutil.copytree(scored, copy)
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest.update(name=name, settings_sha256=folder)
        (copy / "manifest.json").write_text(json.dumps(manifest))
    board = build_leaderboard([runs], runs)  # the output inside the runs: links start with names
    assert len(board.records) == len(HOSTILE)
    page = (runs / "leaderboard.html").read_text()
    assert "href='javascript:" not in page and 'href="javascript:' not in page
    assert "<img src=x" not in page and "&lt;img src=x" in page
    hrefs = [part.split("'", 1)[0] for part in page.split("<a href='")[1:]]
    for href in hrefs:
        assert href.startswith("./") and ":" not in href
        from urllib.parse import unquote

        assert (runs / unquote(href)).is_file()
    markdown = (runs / "LEADERBOARD.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "./" in line]
    columns = {len(re.split(r"(?<!\\)\|", line)) for line in rows}  # unescaped pipes only
    assert len(rows) == len(HOSTILE) and len(columns) == 1  # no name adds a cell
    assert "<img" not in markdown and "](javascript" not in markdown
    with open(runs / "leaderboard.csv") as handle:
        names = [row["run"] for row in csv.DictReader(handle)]
    assert not any(name.startswith(("=", "+", "-", "@")) for name in names)
    assert any(name.startswith("'=HYPERLINK") for name in names)


def test_unreadable_run_files_are_listed_apart_with_the_file_named(tmp_path, scored):
    runs = tmp_path / "runs"
    for folder in ("good", "bad-manifest", "null-results"):
        shutil.copytree(scored, runs / folder)
    (runs / "bad-manifest" / "manifest.json").write_text("{not json")
    (null,) = (runs / "null-results").rglob("results_*.json")
    null.write_text("null")
    before = {}
    output = tmp_path / "board"
    board = build_leaderboard([runs], output)
    assert len(board.records) == 1 and len(board.unread) == 2
    markdown = (output / "LEADERBOARD.md").read_text()
    assert "## Not read" in markdown and "manifest.json" in markdown and "null-results" in markdown
    assert "not an object" in markdown
    assert before == {}


def test_files_the_project_writes_follow_the_users_umask(tmp_path, scored):
    """Files are written atomically (a temporary file renamed), yet get the permissions the
    user's umask gives a new file: whatever umask the suite runs under (Debian's 002 for a
    user with a private group, 022, ...), and another one set here."""
    session_umask = os.umask(0o027)
    try:
        build_leaderboard([scored.parent], tmp_path / "board")
        from tofu_tasks.reference_files import load_reference, write_reference_file

        reference = load_reference(scored)
        write_reference_file(tmp_path / "ref.json", list(reference.rows), {})
    finally:
        os.umask(session_umask)
    for path in [*(tmp_path / "board").iterdir(), tmp_path / "ref.json"]:
        assert path.stat().st_mode & 0o777 == 0o640, path
    # the scoring run was written before, under the session's umask
    assert (scored / "manifest.json").stat().st_mode & 0o777 == 0o666 & ~session_umask


def test_a_truncated_weights_file_gets_a_clear_error(tmp_path, tiny_model_dir, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert main(["score", str(model), "--output", str(tmp_path / "runs"), *FAST]) == 2
    error = capsys.readouterr().err
    assert "is truncated" in error and "Traceback" not in error
    assert main(train_args(model, tmp_path / "run")) == 2
    assert "is truncated" in capsys.readouterr().err


def test_an_adapter_on_a_base_of_another_family_gets_a_clear_error(
    tmp_path, tiny_lora_dir, tiny_tokenizer, capsys
):
    from harness_ext.testing.tiny_models import build_tiny_llama

    other = build_tiny_llama(tmp_path / "wider", tokenizer=tiny_tokenizer, hidden_size=96)
    args = [
        "score",
        str(tiny_lora_dir),
        "--base",
        str(other),
        "--output",
        str(tmp_path / "runs"),
        *FAST,
    ]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "does not fit the base model" in error and "Traceback" not in error


def test_a_reference_that_is_a_json_list_gets_a_clear_error(tmp_path, tiny_model_dir, capsys):
    listed = tmp_path / "reference.json"
    listed.write_text("[1, 2, 3]")
    args = ["score", str(tiny_model_dir), "--output", str(tmp_path / "runs"), *FAST,
            "--reference", str(listed)]  # fmt: skip
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "a JSON list, not a reference" in error and "Traceback" not in error


def test_missing_offline_assets_say_which_extra_installs_them(monkeypatch):
    """The packaged MiniLM and GGUF reading come with the optional `offline` extra: without it,
    a message names the install command instead of an ImportError."""
    import importlib.util

    from harness_ext import assets

    found = importlib.util.find_spec
    missing = {assets.MINILM_MODULE, "gguf"}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in missing else found(name, *a))  # fmt: skip
    for load in (assets.minilm_dir, assets.require_gguf):
        with pytest.raises(assets.AssetError, match=r'pip install "lm-unlearn\[offline\]"'):
            load()
