"""The ``lm-unlearn`` command line.

lm-unlearn score MODEL... [--base BASE] [--forget forget01] [--output results/runs]
lm-unlearn leaderboard results/runs --output results/
lm-unlearn audit MODEL [--attacks relearn,quantize,paraphrase] [--target TARGET] [--output DIR]
lm-unlearn train --method ME+GD --model X --forget forget01 --output DIR
lm-unlearn reference --model X --output FILE
lm-unlearn aggregate --legacy-logs DIR [--reference-logs DIR] [--json]
lm-unlearn demo | tasks-path | eval [lm_eval arguments...]
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from harness_ext import __version__
from harness_ext.commands.handlers import (
    cmd_aggregate,
    cmd_audit,
    cmd_continual,
    cmd_demo,
    cmd_doctor,
    cmd_eval,
    cmd_finetune,
    cmd_leaderboard,
    cmd_reference,
    cmd_score,
    cmd_tasks_path,
    cmd_train,
)
from harness_ext.commands.parsing import Parser, with_examples

# Two or three examples at the end of each command's help (a test parses every one).
EXAMPLES = {
    "aggregate": [
        "lm-unlearn aggregate --legacy-logs logs/llama2-7b_full_wd0.01 --json",
        "lm-unlearn aggregate --legacy-logs logs/llama2-7b_full_wd0.01 "
        "--reference-logs logs/llama2-7b_retain90_wd0.01 --tokenizer meta-llama/Llama-2-7b-chat-hf",
    ],
    "demo": [
        "lm-unlearn demo",
        "lm-unlearn demo --methods ME+GD,IDK+AP,GA+GD,NPO+GD --audit relearn,quantize,paraphrase",
        "lm-unlearn demo --benchmark lume --audit relearn",
    ],
    "reference": [
        "lm-unlearn reference --model locuslab/tofu_ft_llama2-7b --prompt-format llama2 "
        "--output refs/target.json",
        "lm-unlearn reference --model models/retain99 --model-args dtype=bfloat16 "
        "--tasks tofu_forget10_unlearn --output refs/retain90.json",
    ],
    "train": [
        "lm-unlearn train --config tofu_llama2 --method ME+GD --forget forget01 --output runs/me-gd",
        "lm-unlearn train --config tofu_llama2 --method IDK+AP --forget forget05 --lora "
        "--output runs/idk-ap",
        "lm-unlearn train --method GA+GD --model MODEL --forget forget01 --output runs/ga-gd "
        "--eval-every 2 --select-matching-reference refs/retain99.json",
    ],
    "continual": [
        "lm-unlearn continual --method ME+GD --model locuslab/tofu_ft_llama2-7b --requests 10 "
        "--prompt-format llama2 --pad-token eos --output runs/continual-me-gd",
    ],
    "finetune": [
        "lm-unlearn finetune --model meta-llama/Llama-2-7b-chat-hf --data retain99 "
        "--prompt-format llama2 --pad-token eos --output models/retain99",
        "lm-unlearn finetune --model MODEL --data full --num-train-epochs 5 --output models/target",
    ],
    "score": [
        "lm-unlearn score runs/me-gd --reference refs/retain99.json "
        "--pre-unlearning-reference refs/target.json",
        "lm-unlearn score open-unlearning/some-model --base meta-llama/Llama-2-7b-chat-hf "
        "--forget forget10",
        "lm-unlearn score --list models.txt --backend vllm --model-args tensor_parallel_size=2",
    ],
    "leaderboard": [
        "lm-unlearn leaderboard results/runs --output results/",
        "lm-unlearn leaderboard results/runs --rank-by privleak --output results/by-privleak",
    ],
    "audit": [
        "lm-unlearn audit runs/me-gd --target locuslab/tofu_ft_llama2-7b --control models/retain99",
        "lm-unlearn audit runs/me-gd --attacks quantize --bits 4 --target results/runs/target-run",
    ],
    "doctor": ["lm-unlearn doctor", "lm-unlearn doctor --data-dir path/to/tofu"],
    "tasks-path": [
        'lm_eval --include_path "$(lm-unlearn tasks-path)" --tasks tofu_forget01_unlearn'
    ],
    "eval": [
        "lm-unlearn eval --model hf --model_args pretrained=MODEL --tasks tofu_forget01_unlearn",
    ],
}


TRAINING_HELP = {
    "train": "unlearn a TOFU forget split with a registered method; writes a checkpoint",
    "continual": "serve forget10 as a sequence of forget requests, scoring after each",
    "finetune": "fine-tune a model on TOFU splits (make a target or a retain model)",
}
TRAINING_COMMANDS = tuple(TRAINING_HELP)  # their options are TrainingArguments subclasses


def add_training_parsers(sub, lazy: bool = False) -> None:
    """train, continual and finetune: their options are TrainingArguments subclasses."""
    if lazy:
        for name, text in TRAINING_HELP.items():
            sub.add_parser(name, help=text)
        return
    from harness_ext.workflows.continual import PER_REQUEST_FIELDS, ContinualSettings
    from unlearn_methods.config import FinetuneConfig, UnlearnConfig

    library_note = (
        "Every other transformers TrainingArguments field is accepted too, as --name value "
        "(e.g. --lr_scheduler_type cosine, --report_to wandb, --deepspeed ds.json)."
    )
    trainer = sub.add_parser(
        "train",
        dataclass_types=[UnlearnConfig],
        help=TRAINING_HELP["train"],
        description="Options come from the command line, else from --config (YAML whose keys are "
        "the options' names, plus per-method overrides under 'methods:'), else the paper's "
        "defaults. " + library_note,
    )
    trainer.add_argument("--config", help="YAML file of options (see unlearn_methods/configs)")
    trainer.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved run as JSON (steps, warm-up, batch, coefficients, rows) and exit",
    )
    trainer.set_defaults(handler=cmd_train, parser=trainer)

    cont = sub.add_parser(
        "continual",
        dataclass_types=[ContinualSettings, UnlearnConfig],
        help=TRAINING_HELP["continual"],
        description="Request 1 = forget01 (the last 2 authors), request 2 the 2 before, ...; each "
        "starts from the previous checkpoint (also its reference). Rerun to resume. The "
        "unlearning options are train's, except "
        + ", ".join("--" + name.replace("_", "-") for name in PER_REQUEST_FIELDS)
        + ", which each request sets. "
        + library_note,
    )
    for action in cont._actions:  # set per request: out of help (and refused if given)
        if action.dest in PER_REQUEST_FIELDS:
            action.help = argparse.SUPPRESS
    cont.set_defaults(handler=cmd_continual, parser=cont)

    tune = sub.add_parser(
        "finetune",
        dataclass_types=[FinetuneConfig],
        help=TRAINING_HELP["finetune"],
        description="Plain supervised fine-tuning on TOFU question/answer pairs, the step before "
        "unlearning. --data lists splits, each optionally cut by a row slice (split[a:b]). "
        + library_note,
    )
    tune.set_defaults(handler=cmd_finetune, parser=tune)


def build_parser(lazy: bool = False) -> argparse.ArgumentParser:
    """The command line. ``lazy``: the training commands' parsers as placeholders (their options
    are TrainingArguments', whose import takes seconds), for a command line that runs another
    command."""
    parser = Parser(
        prog="lm-unlearn", description="Machine unlearning of LLMs on lm-evaluation-harness."
    )
    parser.add_argument("--version", action="version", version=f"lm-unlearn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    from harness_ext.commands.arguments import (
        AggregateArguments,
        AuditArguments,
        DemoArguments,
        DoctorArguments,
        LeaderboardArguments,
        ReferenceArguments,
        ScoreArguments,
        ScoringArguments,
    )

    agg = sub.add_parser(
        "aggregate",
        dataclass_types=[AggregateArguments],
        help="compute every metric from existing per-sample logs (no model needed)",
    )
    agg.set_defaults(handler=cmd_aggregate)

    demo = sub.add_parser(
        "demo",
        dataclass_types=[DemoArguments],
        help="fine-tune, unlearn, score and rank on the packaged SmolLM2 (CPU, offline; TOFU or LUME)",
    )
    demo.set_defaults(handler=cmd_demo, parser=demo)

    ref = sub.add_parser(
        "reference",
        dataclass_types=[ReferenceArguments],
        help="score a model before unlearning once and store its outputs and truth ratios",
        description="The file serves as pre_unlearning_reference (cosine similarity and "
        "entailment on Real Authors / World Facts) and as retain_reference (forget quality).",
    )
    ref.set_defaults(handler=cmd_reference)

    add_training_parsers(sub, lazy=lazy)

    score = sub.add_parser(
        "score",
        dataclass_types=[ScoringArguments, ScoreArguments],
        help="score checkpoints, adapters or hub models on tofu_*_unlearn; skips scored ones",
        description="Each model gets a run folder under --output with lm-eval's results and "
        "samples files and manifest.json. A folder of checkpoints scores each one.",
    )
    score.add_argument(
        "models", nargs="*", help="hub id, checkpoint or adapter folder, or a folder of them"
    )
    score.add_argument("--list", help="file with one model per line")
    score.add_argument(
        "--model",
        dest="more_models",
        metavar="MODEL",
        action="append",
        default=[],
        help="a model to score, as the positional MODELS (may be repeated)",
    )
    score.set_defaults(handler=cmd_score, parser=score)

    audit = sub.add_parser(
        "audit",
        dataclass_types=[ScoringArguments, AuditArguments],
        help="does the forgetting hold? relearn, quantize and paraphrase attacks, scored",
        description="Attacks an unlearned model and scores each attacked version like any other "
        "run (in --runs, beside lm-unlearn score's runs): relearn = fine-tune on part of the "
        "forget set, score the rest; quantize = 8- and 4-bit weights (bitsandbytes); paraphrase = "
        "the forget questions rephrased. Writes audit.md, audit.csv and audit.json: each forget "
        "metric before and after each attack, the recovery (after - before) / (target - "
        "before) when --target is given, and, with --control (the retain model), relearning's "
        "gain on the control and the difference.",
    )
    audit.add_argument("model", help="the unlearned model: checkpoint or adapter folder, hub id")
    audit.set_defaults(handler=cmd_audit, parser=audit)

    board = sub.add_parser(
        "leaderboard",
        dataclass_types=[LeaderboardArguments],
        help="LEADERBOARD.md, leaderboard.csv and leaderboard.html from run folders",
    )
    board.add_argument("runs", nargs="+", type=Path, help="folders of runs or lm-eval results")
    board.set_defaults(handler=cmd_leaderboard)

    doctor = sub.add_parser(
        "doctor",
        dataclass_types=[DoctorArguments],
        help="versions, autoload, data and metric models, for bug reports",
    )
    doctor.set_defaults(handler=cmd_doctor)

    path = sub.add_parser("tasks-path", help="print the folder holding the task YAMLs")
    path.set_defaults(handler=cmd_tasks_path)

    run = sub.add_parser(
        "eval",
        help="lm_eval with the project's tasks on --include_path (all lm_eval arguments pass)",
        add_help=False,
    )
    run.set_defaults(handler=None)
    for name, command in sub.choices.items():
        with_examples(command, EXAMPLES[name])
    parser.commands = sub.choices
    return parser


def apply_config_file(command: Parser, argv: Sequence[str]) -> None:
    """``train --config FILE``: the file's values become the command's defaults, so the
    command line wins over them (TRL's ``TrlParser`` does the same)."""
    from unlearn_methods.config import load_config_file

    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    early.add_argument("--config")
    early.add_argument("--method")
    known, _ = early.parse_known_args(argv)
    if known.config:
        command.set_defaults(**load_config_file(known.config, known.method))


def parse_command(argv: Sequence[str]) -> argparse.Namespace:
    """The parsed command line, ``train --config``'s file applied first."""
    parser = build_parser(lazy=not argv or argv[0] not in TRAINING_COMMANDS)
    if argv[:1] == ["train"]:
        apply_config_file(parser.commands["train"], argv[1:])
    args = parser.parse_args(argv)
    args.argv = list(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # bitsandbytes (imported with transformers' TrainingArguments) logs at import, on CPUs with
    # AVX512-BF16, that an optional kernel from the hub is missing, or, offline, that it skipped
    # the kernel's publisher check; it falls back to its own kernel, so the lines are noise
    for noisy in ("bitsandbytes.backends.cpu.ops", "kernels._internals.hf_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    if argv[:1] == ["eval"]:
        return cmd_eval(argparse.Namespace(), argv[1:])
    from harness_ext.assets import AssetError

    command = argv[0] if argv else ""
    try:
        args = parse_command(argv)
        return args.handler(args)
    except (ValueError, OSError, AssetError) as err:
        print(f"lm-unlearn {command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
