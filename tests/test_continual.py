"""Continual unlearning on a tiny model: request rows, shrinking retain data, resuming."""

import json

import pytest
import torch
from safetensors.torch import load_file

from harness_ext.commands.cli import main
from harness_ext.workflows.continual import forget_spec, request_dir, request_rows, retain_spec

TRAIN = ["--max-steps", "2", "--per-device-train-batch-size", "4", "--effective-batch-size", "4",
         "--max-length", "96", "--prompt-format", "plain", "--bf16", "false"]  # fmt: skip
SCORE = ["--max-rows-per-set", "2", "--score-batch-size", "4", "--device", "cpu",
         "--metadata", json.dumps({"embedding_model": "none", "nli_model": "none"})]  # fmt: skip


def continual(model, output, requests):
    args = ["continual", "--method", "NPO+GD", "--model", str(model), "--output", str(output),
            "--requests", str(requests), "--base-retain", "retain_perturbed[:20]"]  # fmt: skip
    assert main([*args, *TRAIN, *SCORE]) == 0


def test_requests_follow_the_spec():
    assert request_rows(1) == (360, 400)  # forget01 = the last two authors of forget10
    assert request_rows(2) == (320, 360)
    assert request_rows(10) == (0, 40)
    assert forget_spec(3) == "forget10[280:320]"
    assert retain_spec(3, "retain90") == "retain90,forget10[0:280]"
    assert retain_spec(10, "retain90") == "retain90"
    with pytest.raises(ValueError):
        request_rows(11)


def test_request_one_is_forget01(tofu_dir):
    from tofu_tasks.data import read_split
    from unlearn_methods.data import read_rows

    assert read_rows(forget_spec(1)) == read_split("forget01")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model_dir):
    output = tmp_path_factory.mktemp("continual") / "run"
    continual(tiny_model_dir, output, 3)
    return output


def test_three_requests_with_shrinking_retain_data(uninterrupted):
    cards = [
        json.loads((request_dir(uninterrupted, k) / "run_card.json").read_text()) for k in (1, 2, 3)
    ]
    assert [c["data"]["forget_rows"] for c in cards] == [40, 40, 40]
    assert [c["data"]["retain_rows"] for c in cards] == [20 + 360, 20 + 320, 20 + 280]
    # each request starts from the previous checkpoint
    assert cards[1]["output"]["base_model"] == str(request_dir(uninterrupted, 1))
    assert cards[2]["output"]["base_model"] == str(request_dir(uninterrupted, 2))
    table = (uninterrupted / "continual.csv").read_text().splitlines()
    assert table[0].startswith("request,forget_rows,retain_rows")
    assert [line.split(",")[1] for line in table[1:]] == ["360:400", "320:360", "280:320"]
    manifests = [
        json.loads(p.read_text()) for p in (uninterrupted / "runs").glob("*/manifest.json")
    ]
    assert sorted(m["task_metadata"]["forget_rows"] for m in manifests) == [
        "280:320",
        "320:360",
        "360:400",
    ]
    assert "<svg" in (uninterrupted / "continual.html").read_text()


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(
    uninterrupted, tmp_path, tiny_model_dir, capsys
):
    output = tmp_path / "resumed"
    continual(tiny_model_dir, output, 2)  # stopped after request 2
    capsys.readouterr()
    continual(tiny_model_dir, output, 3)  # started again: serves request 3 only
    printed = capsys.readouterr().out
    assert "request 1: already served" in printed and "request 2: already served" in printed
    resumed = load_file(request_dir(output, 3) / "model.safetensors")
    straight = load_file(request_dir(uninterrupted, 3) / "model.safetensors")
    assert resumed.keys() == straight.keys()
    for name in straight:
        assert torch.equal(resumed[name], straight[name]), name


def test_with_lora_request_k_is_measured_against_request_k_minus_1(tmp_path, tiny_model_dir):
    """NPO+KL with --lora over 2 requests: request 2 continues request 1's adapter, and its
    reference model is request 1's model (base + adapter), not the base with the adapter off."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from unlearn_methods.config import UnlearnConfig
    from unlearn_methods.train import build_run

    output = tmp_path / "lora"
    args = ["continual", "--method", "NPO+KL", "--model", str(tiny_model_dir), "--output",
            str(output), "--requests", "2", "--base-retain", "retain_perturbed[:20]", "--lora",
            "--learning-rate", "5e-3"]  # fmt: skip
    assert main([*args, *TRAIN, *SCORE]) == 0
    first, second = request_dir(output, 1), request_dir(output, 2)
    for folder in (first, second):
        assert (folder / "adapter_config.json").is_file()
        config = json.loads((folder / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == str(tiny_model_dir)

    options = UnlearnConfig(
        method="NPO+KL", model=str(first), output_dir=str(tmp_path / "probe"),
        forget=forget_spec(2), retain=retain_spec(2, "retain_perturbed[:20]"), lora=True,
        max_steps=1, per_device_train_batch_size=2, effective_batch_size=2, max_length=96,
        prompt_format="plain", bf16=False,
    )  # fmt: skip
    trainer = build_run(options).trainer
    ids = torch.tensor([[1, 17, 45, 300, 12, 9]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    request_one = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), first
    ).eval()
    with torch.no_grad():
        reference = trainer.ref_model(input_ids=ids).logits
        policy = trainer.model.eval()(input_ids=ids).logits  # eval: no LoRA dropout
        expected = request_one(input_ids=ids).logits
        bare = base(input_ids=ids).logits
    assert torch.allclose(reference, expected, atol=1e-5)
    assert torch.allclose(policy, expected, atol=1e-5)  # training continues from request 1
    assert not torch.allclose(reference, bare, atol=1e-3)
    # the two requests trained one adapter further: request 2 moved away from request 1
    request_two = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), second
    ).eval()
    with torch.no_grad():
        assert not torch.allclose(request_two(input_ids=ids).logits, expected, atol=1e-6)
