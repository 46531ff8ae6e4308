"""Continual unlearning on a tiny model: request rows, shrinking retain data, resuming."""

import json

import pytest
import torch
from safetensors.torch import load_file

from harness_ext.cli import main
from harness_ext.continual import forget_spec, request_dir, request_rows, retain_spec

TRAIN = ["--max-steps", "2", "--batch-size", "4", "--effective-batch-size", "4",
         "--max-length", "96", "--prompt-format", "plain", "--no-bf16"]  # fmt: skip
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
