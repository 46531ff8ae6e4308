"""Checkpoints the project writes carry the keys older transformers releases read.

transformers 5.x writes the RoPE base only under ``rope_parameters``; 4.x reads the top-level
``rope_theta`` (else Llama's default 10000: another model) and does not know 5.x's tokenizer
class name. The loading check in transformers 4.45 itself is ``make check-old-readers``
(tests/old_readers.py); here: the keys are written, and 5.x loads the same model from them.
"""

from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture(scope="module")
def written(tmp_path_factory, tiny_tokenizer):
    from harness_ext.commands.cli import main
    from harness_ext.testing.tiny_models import build_tiny_llama

    root = tmp_path_factory.mktemp("compat")
    base = build_tiny_llama(root / "base", tokenizer=tiny_tokenizer, rope_theta=100000.0)
    output = root / "finetuned"
    args = ["finetune", "--model", str(base), "--data", "forget01[:4]", "--num-train-epochs", "1",
            "--learning-rate", "1e-3", "--per-device-train-batch-size", "4", "--effective-batch-size", "4",
            "--output", str(output), "--prompt-format", "plain"]  # fmt: skip
    assert main(args) == 0
    return base, output


def test_finetune_writes_the_keys_older_readers_need(written):
    base, output = written
    before = json.loads((base / "config.json").read_text())
    assert "rope_theta" not in before  # what transformers 5 writes by itself
    config = json.loads((output / "config.json").read_text())
    assert config["rope_parameters"]["rope_theta"] == 100000.0
    assert config["rope_theta"] == 100000.0 and config["rope_scaling"] is None
    tokenizer = json.loads((output / "tokenizer_config.json").read_text())
    assert tokenizer["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_the_added_keys_leave_the_model_as_it_was(written, tmp_path):
    """transformers 5 reads the checkpoint with and without the added keys as one model."""
    import shutil

    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, output = written
    bare = tmp_path / "bare"
    shutil.copytree(output, bare)
    config = json.loads((bare / "config.json").read_text())
    del config["rope_theta"], config["rope_scaling"]
    (bare / "config.json").write_text(json.dumps(config))
    prompt = "Question: Where was the author born?\nAnswer: The author was born in" * 3
    outputs = []
    for folder in (output, bare):
        tokenizer = AutoTokenizer.from_pretrained(folder)
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            outputs.append((ids, AutoModelForCausalLM.from_pretrained(folder)(ids).logits))
    assert torch.equal(outputs[0][0], outputs[1][0])
    assert torch.equal(outputs[0][1], outputs[1][1])


def test_scaled_rope_and_nested_configs(tmp_path):
    from harness_ext.model_files import add_reader_compatibility

    llama3 = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0}
    (tmp_path / "config.json").write_text(json.dumps({
        "rope_parameters": llama3,
        "text_config": {"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}},
    }))  # fmt: skip
    add_reader_compatibility(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["rope_theta"] == 500000.0
    assert config["rope_scaling"] == {"rope_type": "llama3", "factor": 8.0}
    assert config["text_config"]["rope_theta"] == 1e6
    # per-layer-type settings (Gemma 3) have no single base to mirror: left alone
    layered = {"rope_parameters": {"full_attention": {"rope_theta": 1e6}}}
    (tmp_path / "config.json").write_text(json.dumps(layered))
    add_reader_compatibility(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == layered
