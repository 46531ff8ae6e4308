"""Never serve a stale score, never ignore a mistyped option.

Everything that can change a score enters the settings hash of `lm-unlearn score`: each edit below
makes the model count as not scored yet, while an untouched copy elsewhere is recognised. And a
task option name one typo away from a real one stops the run before any model loads.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness_ext.commands.cli import main
from harness_ext.workflows.score_inputs import ScoreSettings, resolve_model
from harness_ext.workflows.score_runs import settings_hash, settings_key

FAST = ["--max-rows-per-set", "1", "--batch-size", "4", "--device", "cpu",
        "--metadata", json.dumps({"embedding_model": "none", "nli_model": "none"})]  # fmt: skip


def digest(model: Path, **settings) -> str:
    spec = resolve_model(str(model))
    chosen = ScoreSettings(**{"metadata": {"max_rows_per_set": 1}, **settings})
    return settings_hash(settings_key(spec, chosen, "chat"))


def edit_json(path: Path, **changes) -> None:
    content = json.loads(path.read_text())
    content.update(changes)
    path.write_text(json.dumps(content))


EDITS = {
    "chat template in tokenizer_config.json": lambda m: edit_json(
        m / "tokenizer_config.json", chat_template="{{ messages[0]['content'] }}"
    ),
    "chat_template.jinja": lambda m: (m / "chat_template.jinja").write_text("{{ 'changed' }}"),
    "generation_config.json": lambda m: edit_json(m / "generation_config.json", max_new_tokens=7),
    "config.json": lambda m: edit_json(m / "config.json", rms_norm_eps=1e-3),
    "tokenizer.json": lambda m: (m / "tokenizer.json").write_text(
        (m / "tokenizer.json").read_text().replace('"<unk>"', '"<unknown>"', 1)
    ),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_each_edit_beside_the_weights_changes_the_settings(tmp_path, tiny_model_dir, edit):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    if not (model / "chat_template.jinja").exists():
        (model / "chat_template.jinja").write_text("{{ 'original' }}")
    before = digest(model)
    EDITS[edit](model)
    assert digest(model) != before, edit


def test_an_untouched_copy_elsewhere_is_the_same_model(tmp_path, tiny_model_dir):
    first, second = tmp_path / "a" / "model", tmp_path / "b" / "elsewhere"
    shutil.copytree(tiny_model_dir, first)
    shutil.copytree(tiny_model_dir, second)
    assert digest(first) == digest(second)


def test_options_data_backend_references_and_versions_enter_the_settings(
    tmp_path, tiny_model_dir, tofu_copy, monkeypatch
):
    import harness_ext.workflows.score_runs as score

    base = digest(tiny_model_dir)
    assert digest(tiny_model_dir, metadata={"max_rows_per_set": 2}) != base
    assert digest(tiny_model_dir, backend="hf") != base
    assert digest(tiny_model_dir, model_args="dtype=bfloat16") != base
    template = {"prompt": "Q: {question}\nA:", "answer": " {answer}"}
    assert (
        digest(tiny_model_dir, metadata={"max_rows_per_set": 1, "prompt_template": template})
        != base
    )
    # the data: same options, other content
    rows = (tofu_copy / "forget01_perturbed.json").read_text().splitlines()
    first = json.loads(rows[0])
    first["answer"] += " Indeed."
    rows[0] = json.dumps(first)
    (tofu_copy / "forget01_perturbed.json").write_text("\n".join(rows) + "\n")
    monkeypatch.setenv("TOFU_DATA_DIR", str(tofu_copy))
    assert digest(tiny_model_dir) != base
    monkeypatch.undo()
    # the versions of the project, lm-eval and transformers
    real = score.package_versions()
    monkeypatch.setattr(score, "package_versions", lambda: {**real, "transformers": "99.0"})
    assert digest(tiny_model_dir) != base


def test_an_edited_chat_template_is_scored_again(tmp_path, tiny_model_dir, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    out = tmp_path / "runs"
    assert main(["score", str(model), "--output", str(out), *FAST]) == 0
    assert main(["score", str(model), "--output", str(out), *FAST]) == 0
    assert "already scored with identical settings" in capsys.readouterr().out
    edit_json(model / "tokenizer_config.json", chat_template=(
        "{% for m in messages %}{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %} => {% endif %}"
    ))  # fmt: skip
    (model / "chat_template.jinja").unlink(missing_ok=True)
    assert main(["score", str(model), "--output", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "already scored with identical" not in printed and "1 scored, 0 skipped" in printed
    assert len(list(out.glob("*/manifest.json"))) == 2


MISTYPED = json.dumps({"max_row_per_set": 3})


def test_lm_eval_stops_on_a_mistyped_option_before_loading_the_model(tmp_path):
    """The model does not exist: if lm-eval got as far as loading it, the error would say so."""
    done = subprocess.run(
        [sys.executable, "-m", "lm_eval", "run", "--model", "hf",
         "--model_args", f"pretrained={tmp_path / 'no-such-model'}",
         "--tasks", "tofu_forget01_unlearn", "--metadata", MISTYPED],
        capture_output=True, text=True, env=os.environ.copy(),
    )  # fmt: skip
    assert done.returncode != 0
    assert "did you mean max_rows_per_set?" in done.stderr
    assert "no-such-model" not in done.stderr.split("did you mean")[0][-2000:]


@pytest.mark.parametrize("command", ["score", "reference", "continual"])
def test_lm_unlearn_commands_stop_on_a_mistyped_option(tmp_path, capsys, command):
    model = str(tmp_path / "no-such-model")
    args = {
        "score": ["score", model, "--metadata", MISTYPED, "--output", str(tmp_path / "o")],
        "reference": ["reference", "--model", model, "--metadata", MISTYPED,
                      "--output", str(tmp_path / "r.json")],
        "continual": ["continual", "--method", "GA", "--model", model, "--output",
                      str(tmp_path / "c"), "--metadata", MISTYPED],
    }[command]  # fmt: skip
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "did you mean max_rows_per_set?" in error and "does not exist" not in error
    assert not any(tmp_path.iterdir())  # nothing written


def test_options_of_the_backends_and_a_tofu_prefix():
    from tofu_tasks.options import TaskOptionError, check_option_names, hf_model_arguments

    fine = {"dtype": "bfloat16", "device": "cpu", "max_length": 2048, "trust_remote_code": True,
            "gpu_memory_utilization": 0.8, "tensor_parallel_size": 2, "max_rows_per_set": 3}  # fmt: skip
    check_option_names(fine, hf_model_arguments())
    with pytest.raises(TaskOptionError, match="tofu_rows"):
        check_option_names({"tofu_rows": "full"}, hf_model_arguments())
    with pytest.raises(TaskOptionError, match="did you mean nli_model"):
        check_option_names({"nli_modle": "x"}, hf_model_arguments())


def test_an_adapter_and_its_base_copied_elsewhere_are_the_same_models(
    tmp_path, tiny_model_dir, tiny_lora_dir
):
    """Trainer files (training_args.bin pickles its output folder) and the base path written in
    adapter_config.json name the machine's folders, not the model: they do not count."""
    keys = []
    for place in ("here", "there"):
        base, adapter = tmp_path / place / "base", tmp_path / place / "adapter"
        shutil.copytree(tiny_model_dir, base)
        (base / "training_args.bin").write_bytes(f"saved in {base}".encode())
        shutil.copytree(tiny_lora_dir, adapter)
        edit_json(adapter / "adapter_config.json", base_model_name_or_path=str(base))
        keys.append((digest(base), digest(adapter)))
    assert keys[0] == keys[1]
