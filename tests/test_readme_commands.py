"""The README's first command, run as written (the bare `lm_eval` console script, default rows),
with the model swapped for the conformance kit's tiny TOFU model; and the prompt format it relies
on for TOFU's own checkpoint."""

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KIT_MODEL = ROOT.parent / "shared" / "conformance" / "tiny-tofu-llama"
README_MODEL = "locuslab/tofu_ft_llama2-7b"


def readme_first_command() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(lm_eval .*?)\n```", readme, re.S).group(1)
    return shlex.split(block)


@pytest.mark.parametrize("split", ["forget01", "forget05"])
def test_the_readmes_first_command_runs_as_written(tmp_path, split):
    command = readme_first_command()
    assert command[0] == "lm_eval" and f"pretrained={README_MODEL}" in command
    command = [
        arg.replace(README_MODEL, str(KIT_MODEL)).replace(
            "tofu_forget01_unlearn", f"tofu_{split}_unlearn"
        )
        for arg in command
    ]
    command += ["--output_path", str(tmp_path), "--device", "cpu"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PATH": f"{Path(os.sys.executable).parent}:{os.environ['PATH']}"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (results_file,) = tmp_path.rglob("results_*.json")
    results = json.loads(results_file.read_text())
    tofu = results["configs"][f"tofu_{split}_unlearn"]["metadata"]["tofu"]
    # default rows: TOFU's first-300 rule
    forget = {"forget01": 40, "forget05": 200}[split]
    assert tofu["rows_per_set"] == {
        "forget": forget, "retain": 300, "real_authors": 100, "world_facts": 117,
    }  # fmt: skip
    assert tofu["scored_tokens"]["name"] == "tofu"
    values = results["results"][f"tofu_{split}_unlearn"]
    assert isinstance(values["tofu_model_utility,none"], float)
    assert "tofu_model_utility" in done.stdout


def test_tofus_checkpoint_and_its_descendants_get_its_prompt_format(tmp_path):
    from harness_ext.prompts import tofu_checkpoint_format

    assert tofu_checkpoint_format(README_MODEL)[0] == "llama2"
    assert tofu_checkpoint_format("locuslab/tofu_ft_phi-1.5")[0] == "phi"
    assert tofu_checkpoint_format("meta-llama/Llama-2-7b-chat-hf") is None
    # a model unlearned from it, then one fine-tuned from that: found through the cards
    first = tmp_path / "unlearned"
    first.mkdir()
    (first / "run_card.json").write_text(json.dumps({"options": {"model": README_MODEL}}))
    second = tmp_path / "again"
    second.mkdir()
    (second / "finetune_card.json").write_text(json.dumps({"options": {"model": str(first)}}))
    name, why = tofu_checkpoint_format(str(second))
    assert name == "llama2" and README_MODEL in why and str(second) in why
    assert tofu_checkpoint_format(str(tmp_path)) is None


def test_the_task_scores_a_descendant_of_tofus_checkpoint_in_its_format(tmp_path, tiny_model_dir):
    import shutil

    from harness_ext.lm_eval_plugin.run import run_tasks

    model = tmp_path / "unlearned-from-tofu"
    shutil.copytree(tiny_model_dir, model)
    (model / "run_card.json").write_text(json.dumps({"options": {"model": README_MODEL}}))
    metadata = {"max_rows_per_set": 1, "embedding_model": "none", "nli_model": "none"}
    results = run_tasks({"pretrained": str(model)}, ["tofu_forget01_unlearn"], metadata=metadata,
                        batch_size=4, device="cpu")  # fmt: skip
    tofu = results["configs"]["tofu_forget01_unlearn"]["metadata"]["tofu"]
    assert tofu["prompt_format"] == "llama2" and README_MODEL in tofu["prompt_format_reason"]
    prompt = results["samples"]["tofu_forget01_unlearn"][0]["arguments"][0][0]
    assert prompt.startswith("[INST] ") and prompt.endswith(" [/INST]")
