"""The bad-input matrix at the command line: each case exits with code 2, says what is wrong in
one specific message, and writes nothing."""

import json
import shutil

import pytest

from harness_ext.commands.cli import main


def run(capsys, *args):
    code = main(list(args))
    return code, capsys.readouterr().err


def train_args(model, output, *extra):
    return ["train", "--model", str(model), "--output", str(output), "--max-steps", "1",
            "--prompt-format", "plain", "--bf16", "false", *extra]  # fmt: skip


def test_unknown_method_lists_the_known_ones(capsys, tmp_path, tiny_model_dir):
    code, err = run(capsys, *train_args(tiny_model_dir, tmp_path / "out", "--method", "GX+GD"))
    assert code == 2 and "GX" in err and "ME+GD" in err and "IDK+AP" in err
    assert not (tmp_path / "out").exists()


def test_missing_data_file(capsys, tmp_path, tiny_model_dir, tofu_copy):
    (tofu_copy / "forget01.json").unlink()
    code, err = run(capsys, *train_args(tiny_model_dir, tmp_path / "out", "--method", "GA",
                                       "--data-dir", str(tofu_copy)))  # fmt: skip
    assert code == 2 and "forget01.json" in err
    assert not (tmp_path / "out").exists()


def test_corrupt_data_file_names_the_line(capsys, tmp_path, tiny_model_dir, tofu_copy):
    lines = (tofu_copy / "forget01.json").read_text().splitlines()
    lines[3] = lines[3][:40]
    (tofu_copy / "forget01.json").write_text("\n".join(lines) + "\n")
    code, err = run(capsys, *train_args(tiny_model_dir, tmp_path / "out", "--method", "GA",
                                       "--data-dir", str(tofu_copy)))  # fmt: skip
    assert code == 2 and "forget01.json line 4" in err and "not valid JSON" in err
    assert not (tmp_path / "out").exists()


def test_wrong_perturbed_count_and_missing_field(capsys, tmp_path, tiny_model_dir, tofu_copy):
    path = tofu_copy / "forget01_perturbed.json"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[2]["perturbed_answer"] = rows[2]["perturbed_answer"][:3]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    args = train_args(tiny_model_dir, tmp_path / "out", "--method", "GA", "--data-dir",
                      str(tofu_copy), "--forget", "forget01_perturbed", "--retain", "retain_perturbed")  # fmt: skip
    code, err = run(capsys, *args)
    assert code == 2 and "forget01_perturbed.json" in err and "perturbed" in err
    del rows[2]["perturbed_answer"]
    rows[2]["perturbed_answer"] = rows[3]["perturbed_answer"]
    del rows[5]["answer"]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code, err = run(capsys, *args)
    assert code == 2 and "missing field 'answer'" in err
    assert not (tmp_path / "out").exists()


def test_model_path_that_does_not_exist(capsys, tmp_path):
    code, err = run(
        capsys, "score", str(tmp_path / "no-such-model"), "--output", str(tmp_path / "runs")
    )
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "runs").exists()


def test_adapter_whose_base_is_missing(capsys, tmp_path, tiny_lora_dir):
    adapter = tmp_path / "adapter"
    shutil.copytree(tiny_lora_dir, adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "deleted-base")
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    code, err = run(capsys, "score", str(adapter), "--output", str(tmp_path / "runs"))
    assert code == 2 and "base model of adapter" in err and "deleted-base" in err
    assert not (tmp_path / "runs").exists()


def test_output_folder_holding_other_results(capsys, tmp_path, tiny_model_dir):
    output = tmp_path / "out"
    output.mkdir()
    (output / "precious.txt").write_text("keep me")
    code, err = run(capsys, *train_args(tiny_model_dir, output, "--method", "GA"))
    assert code == 2 and "precious.txt" in err and "--overwrite" in err
    code, err = run(capsys, "finetune", "--model", str(tiny_model_dir), "--output", str(output))
    assert code == 2 and "not empty" in err
    assert [p.name for p in output.iterdir()] == ["precious.txt"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["finetune", "--data", "forget01[a:b]"], "split[start:stop]"),
        (["continual", "--method", "ME+GD", "--requests", "11"], "between 1 and 10"),
        (["train", "--method", "GA", "--config", "no_such_config"], "shipped configs are"),
        (["score", "--forget", "forget01", "--prompt-format", "fancy"], "unknown prompt format"),
    ],
)
def test_bad_options(capsys, tmp_path, tiny_model_dir, args, message):
    command, *rest = args
    model = [str(tiny_model_dir)] if command == "score" else ["--model", str(tiny_model_dir)]
    output = [] if command == "score" else ["--output", str(tmp_path / "out")]
    code, err = run(capsys, command, *model, *output, *rest)
    assert code == 2 and message in err
    assert not (tmp_path / "out").exists()


def test_unknown_metric_name_for_ranking(capsys, tmp_path):
    code, err = run(capsys, "leaderboard", str(tmp_path), "--output", str(tmp_path / "board"),
                    "--rank-by", "forget_rouge")  # fmt: skip
    assert code == 2 and "unknown metric 'forget_rouge'" in err and "forget_rougeL_recall" in err
    assert not (tmp_path / "board").exists()
