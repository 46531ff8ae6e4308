"""One command-line language: both spellings of every long option, --version, and help that ends
with examples the parser accepts."""

import shlex

import pytest

import harness_ext
from harness_ext.commands.cli import EXAMPLES, build_parser, main
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
        _, known_rest = parser.parse_known_args(words[1:])
        if name not in ("train", "finetune", "continual"):
            assert not known_rest, example
        else:
            from unlearn_methods.config import training_arguments_from

            training_arguments_from(known_rest)
