"""Reproducibility and concurrent writers: identical numbers twice, identical weights twice, and
several scoring runs landing in one results folder at once."""

import json
import subprocess
import sys

import torch
from safetensors.torch import load_file

from harness_ext.commands.cli import main
from harness_ext.lm_eval_plugin.results import latest_results, task_metrics
from harness_ext.workflows.leaderboard_runs import read_runs
from harness_ext.workflows.score_inputs import MANIFEST
from harness_ext.workflows.score_runs import completed_runs

TASK = "tofu_forget01_unlearn"
NO_AUX = json.dumps({"embedding_model": "none", "nli_model": "none"})


def score_command(model, output, rows):
    return [sys.executable, "-m", "harness_ext.commands.cli", "score", str(model), "--output", str(output),
            "--max-rows-per-set", str(rows), "--batch-size", "4", "--device", "cpu",
            "--metadata", NO_AUX]  # fmt: skip


def test_concurrent_scoring_runs_do_not_corrupt_each_other(tmp_path, tiny_model_dir):
    runs = tmp_path / "runs"
    # two runs with identical settings race for the same folder; a third has other settings
    commands = [score_command(tiny_model_dir, runs, rows) for rows in (2, 2, 3)]
    processes = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    outputs = [p.communicate() for p in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-2000:]
    finished = completed_runs(runs)
    assert len(finished) == 2  # one per distinct setting
    for run in finished:
        manifest = json.loads((run / MANIFEST).read_text())
        for name in manifest["files"]:
            assert (run / name).is_file()
        json.loads(next(run.rglob("results_*.json")).read_text())  # complete JSON
    assert not list(runs.glob(".partial-*"))  # the losing run cleaned up after itself
    assert len(read_runs([runs])) == 2


def test_scoring_the_same_checkpoint_twice_gives_identical_numbers(tmp_path, tiny_model_dir):
    values = []
    for name in ("first", "second"):
        out = tmp_path / name
        args = ["score", str(tiny_model_dir), "--output", str(out), "--max-rows-per-set", "2",
                "--batch-size", "4", "--device", "cpu", "--metadata", NO_AUX]  # fmt: skip
        assert main(args) == 0
        (run,) = completed_runs(out)
        values.append(task_metrics(latest_results(run), TASK))
    assert values[0] == values[1]


def test_training_twice_with_one_seed_gives_identical_weights(tmp_path, tiny_model_dir):
    weights = []
    for name in ("a", "b"):
        out = tmp_path / name
        args = ["train", "--method", "NPO+GD", "--model", str(tiny_model_dir), "--forget", "forget01",
                "--output", str(out), "--max-steps", "3", "--per-device-train-batch-size", "4",
                "--effective-batch-size", "8", "--max-length", "96", "--prompt-format", "plain",
                "--bf16", "false"]  # fmt: skip
        assert main(args) == 0
        weights.append(load_file(out / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    changed = load_file(tiny_model_dir / "model.safetensors")
    assert any(not torch.equal(changed[k], weights[0][k]) for k in changed if k in weights[0])


KILL_AT_STEP_3 = """
import os, signal, sys
from transformers import TrainerCallback
import unlearn_methods.train as train_module

build_run = train_module.build_run


class KillAtStep3(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            os.kill(os.getpid(), signal.SIGKILL)


train_module.build_run = lambda options, callbacks=None: build_run(
    options, [*(callbacks or []), KillAtStep3()]
)
from harness_ext.commands.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_training_run_resumes_to_the_weights_of_an_uninterrupted_one(
    tmp_path, tiny_model_dir
):
    def args(out):
        return ["train", "--method", "GA+GD", "--model", str(tiny_model_dir), "--forget", "forget01",
                "--output", str(out), "--max-steps", "5", "--save-steps", "2", "--per-device-train-batch-size", "4",
                "--effective-batch-size", "4", "--max-length", "96", "--prompt-format", "plain",
                "--bf16", "false"]  # fmt: skip

    killed = tmp_path / "killed"
    done = subprocess.run(
        [sys.executable, "-c", KILL_AT_STEP_3, *args(killed)], capture_output=True, text=True
    )
    assert done.returncode == -9, done.stderr[-2000:]
    assert (killed / "checkpoints" / "checkpoint-2").is_dir() and not (
        killed / "run_card.json"
    ).exists()
    assert main(args(killed)) == 0  # the same command again resumes from checkpoint-2
    assert main(args(tmp_path / "straight")) == 0
    resumed = load_file(killed / "model.safetensors")
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    for key in straight:
        assert torch.equal(resumed[key], straight[key]), key
