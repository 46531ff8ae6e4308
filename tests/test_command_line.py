"""One command-line language: both spellings of every long option, --version, and help that ends
with examples the parser accepts."""

import shlex

import pytest

import harness_ext
from harness_ext.commands.cli import EXAMPLES, TRAINING_COMMANDS, build_parser, main, parse_command
from harness_ext.commands.reference import subcommands


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"lm-unlearn {harness_ext.__version__}"


def test_every_long_option_takes_dashes_and_underscores():
    parser = build_parser()
    checked = 0
    for name, command in subcommands(parser).items():
        for action in command._actions:
            longs = [o for o in action.option_strings if o.startswith("--") and o != "--help"]
            for option in longs:
                body = option[2:]
                if "-" in body or "_" in body:
                    other = "--" + (
                        body.replace("-", "_") if "-" in body else body.replace("_", "-")
                    )
                    assert other in command._option_string_actions, (name, option)
                    assert command._option_string_actions[other] is action
                    checked += 1
    assert checked > 100


def test_the_two_spellings_parse_alike():
    parser = build_parser()
    dashes = parser.parse_args(["score", "m", "--max-rows-per-set", "3", "--model-args", "x=1"])
    underscores = parser.parse_args(
        ["score", "m", "--max_rows_per_set", "3", "--model_args", "x=1"]
    )
    assert vars(dashes) == vars(underscores)
    assert dashes.max_rows_per_set == 3 and dashes.model_args == "x=1"


def test_model_is_a_model_and_backend_a_backend():
    args = build_parser().parse_args(["score", "--model", "a", "--model", "b", "--backend", "hf"])
    assert args.more_models == ["a", "b"] and args.backend == "hf"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_help_ends_with_examples_the_parser_accepts(name):
    parser = build_parser()
    command = subcommands(parser)[name]
    help_text = command.format_help()
    assert help_text.rstrip().splitlines()[-1].strip() == EXAMPLES[name][-1]
    assert 1 <= len(EXAMPLES[name]) <= 3
    for example in EXAMPLES[name]:
        words = shlex.split(example)
        if words[0] != "lm-unlearn" or name == "eval":
            continue  # tasks-path and eval show lm_eval's own command lines
        args = parse_command(words[1:])
        if name in TRAINING_COMMANDS:
            args.parser.dataclasses_from(args)


def _train_config(*flags: str):
    args = parse_command(["train", "--method", "GA", "--model", "m", "--output", "o", *flags])
    (config,) = args.parser.dataclasses_from(args)
    return config


def test_train_options_are_the_training_arguments_fields():
    from dataclasses import fields

    from unlearn_methods.config import UnlearnConfig

    train = build_parser().commands["train"]
    assert train.field_dests() == {f.name for f in fields(UnlearnConfig) if f.init}
    config = _train_config("--learning-rate", "3e-4", "--num_train_epochs", "2", "--beta", "0.5")
    assert isinstance(config, UnlearnConfig)
    assert (config.learning_rate, config.num_train_epochs, config.beta) == (3e-4, 2.0, 0.5)
    assert config.output_dir == "o"  # --output is --output-dir
    # a TrainingArguments field lm-unlearn does not redeclare passes through as itself
    assert str(_train_config("--lr_scheduler_type", "cosine").lr_scheduler_type.value) == "cosine"


def test_the_batch_is_one_thing():
    # the per-device batch with the default effective batch of 32: accumulation reaches it
    assert _train_config("--per-device-train-batch-size", "8").effective_batch == 32
    assert _train_config("--per-device-train-batch-size", "8").gradient_accumulation_steps == 4
    wider = _train_config("--per-device-train-batch-size", "8", "--effective-batch-size", "64")
    assert (wider.gradient_accumulation_steps, wider.effective_batch) == (8, 64)
    # accumulation given instead of the effective batch: taken as given
    given = _train_config(
        "--per-device-train-batch-size", "8", "--gradient-accumulation-steps", "2"
    )
    assert given.effective_batch == 16
    with pytest.raises(ValueError, match="give one of the two"):
        _train_config("--effective-batch-size", "64", "--gradient-accumulation-steps", "2")


def test_config_keys_are_the_flags(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("learning_rate: 3.0e-4\nper_device_train_batch_size: 2\nmethods:\n"
                      "  GA:\n    num_train_epochs: 1\n")  # fmt: skip
    from_file = _train_config("--config", str(config))
    assert (from_file.learning_rate, from_file.per_device_train_batch_size) == (3e-4, 2)
    assert from_file.num_train_epochs == 1.0  # the per-method section
    assert _train_config("--config", str(config), "--learning-rate", "1e-3").learning_rate == 1e-3
    config.write_text("lr: 3.0e-4\n")
    assert main(["train", "--method", "GA", "--model", "m", "--output", "o",
                 "--config", str(config), "--dry-run"]) == 2  # fmt: skip


def test_continual_sets_the_request_options_itself(capsys):
    code = main(["continual", "--method", "GA", "--model", "m", "--output", "o",
                 "--forget", "forget05"])  # fmt: skip
    assert code == 2
    assert "--forget: each request of a continual run sets its own" in capsys.readouterr().err


# Arguments that are no option of a dataclass: positionals, and what only steers the parsing.
NOT_FIELDS = {"help", "config", "dry_run", "list", "more_models", "models", "model", "runs"}


def test_every_option_is_a_dataclass_field():
    """Options are declared once, as dataclass fields parsed by HfArgumentParser."""
    for name, command in subcommands(build_parser()).items():
        if name in ("eval", "tasks-path"):
            continue  # eval passes lm_eval's own arguments; tasks-path takes none
        fields = command.field_dests()
        loose = {a.dest for a in command._actions} - fields - NOT_FIELDS
        assert not loose, (name, loose)
        assert fields, name
