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
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness_ext import __version__
from harness_ext.commands.parsing import Parser, with_examples


def _format_value(value: Any) -> str:
    from harness_ext.metrics.glossary import format_value

    return format_value("", value) if isinstance(value, float) else str(value)


def print_metric_table(metrics: dict[str, Any], title: str | None = None) -> None:
    if title:
        print(title)
    width = max(len(name) for name in metrics)
    for name, value in metrics.items():
        print(f"  {name:<{width}}  {_format_value(value)}")


def load_tokenizer_path(path: str):
    """A tokenizer from a directory, a hub id, or a GGUF file (vocab-only files work)."""
    from transformers import AutoTokenizer

    file = Path(path)
    if file.suffix == ".gguf":
        from harness_ext.assets import require_gguf

        require_gguf()
        return AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
    return AutoTokenizer.from_pretrained(path)


def cmd_aggregate(args: argparse.Namespace) -> int:
    from harness_ext.metrics.output_quality import OutputScorer, with_output_scores
    from tofu_tasks import legacy_logs
    from tofu_tasks.aggregations import summarize_tofu
    from tofu_tasks.reference_files import load_reference

    samples = legacy_logs.directory_samples(args.legacy_logs)
    retain = load_reference(args.reference_logs).forget_ratios if args.reference_logs else None
    pre_unlearning = None
    if args.pre_unlearning_logs:
        reference = load_reference(args.pre_unlearning_logs)
        pre_unlearning = {(r.set_name, r.row, r.question): r.generation for r in reference.rows}
    scorer = OutputScorer.load(
        tokenizer=load_tokenizer_path(args.tokenizer) if args.tokenizer else None,
        embedding_model=args.embedding_model,
        nli_model=args.nli_model,
        device=args.device,
        bertscore=args.bertscore,
        bertscore_model=args.bertscore_model,
        tokenizer_name=args.tokenizer,
    )
    metrics = summarize_tofu(with_output_scores(samples, scorer, pre_unlearning), retain)
    metrics["metric_models"] = scorer.describe()
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        models = metrics.pop("metric_models")
        print_metric_table(metrics, f"metrics of {args.legacy_logs}")
        print_metric_table(models, "computed with")
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    """Score the model before unlearning once and keep its outputs as a reference file."""
    from harness_ext.provenance import git_commit, model_fingerprint, package_versions
    from tofu_tasks import reference_files as R
    from tofu_tasks.options import parse_metadata

    if args.from_samples:
        loaded = R.load_reference(args.from_samples)
        provenance = {
            **loaded.provenance,
            "prompt_format": loaded.prompt_format,
            "converted_from": loaded.source,
        }
        path = R.write_reference_file(args.output, list(loaded.rows), provenance)
        print(f"wrote {path} ({len(loaded.rows)} rows from {loaded.source})")
        return 0
    if not args.model:
        raise ValueError("pass --model (the model before unlearning) or --from-samples")
    from harness_ext.lm_eval_plugin.run import parse_model_args, run_tasks

    model_args = {"pretrained": args.model, **parse_model_args(args.model_args)}
    metadata = {**parse_metadata(args.metadata), "embedding_model": "none", "nli_model": "none"}
    if args.prompt_format:
        metadata["prompt_format"] = args.prompt_format
    # A reference run needs generations and truth ratios only: no auxiliary models, and the
    # warnings about references it does not use itself are noise.
    project_logger = logging.getLogger("lm-unlearn")
    level = project_logger.level
    project_logger.setLevel(logging.ERROR)
    try:
        results = run_tasks(
            model_args,
            args.tasks.split(","),
            backend=args.backend,
            metadata=metadata,
            apply_chat_template=args.apply_chat_template,
            batch_size=args.batch_size,
            device=args.device,
        )
    finally:
        project_logger.setLevel(level)
    model = {
        "model_args": model_args,
        "backend": args.backend,
        **model_fingerprint(args.model, model_args.get("revision")),
    }
    rows, provenance = R.reference_from_results(results, model)
    provenance.update(versions=package_versions(), git_commit=git_commit())
    path = R.write_reference_file(args.output, rows, provenance)
    print(f"wrote {path}: {len(rows)} rows, prompt format {provenance['prompt_format']}")
    return 0


TRAINING_COMMANDS = ("train", "finetune", "continual")


def cmd_train(args: argparse.Namespace) -> int:
    from unlearn_methods.train import dry_run, train

    (config,) = args.parser.dataclasses_from(args)
    config.check_required()
    if args.dry_run:
        print(json.dumps(dry_run(config), indent=2))
        return 0
    output = train(config)
    if os.environ.get("RANK", "0") == "0":  # one line, not one per process
        print(f"wrote {output} (run card: {output / 'run_card.json'})")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from harness_ext.workflows.score import score_model
    from harness_ext.workflows.score_inputs import expand_models

    scoring, where = args.parser.dataclasses_from(args)
    settings = scoring.settings(Path(where.output))
    models = expand_models([*args.models, *args.more_models], args.list)
    if scoring.label and len(models) > 1:
        raise ValueError("--label names one model; score several models without it")
    if scoring.base and len(models) > 1:
        raise ValueError(
            "--base applies to one adapter; give several adapters their base in config"
        )
    outcomes = []
    for index, model in enumerate(models, 1):
        if len(models) > 1:
            print(f"[{index}/{len(models)}] {model}")
        outcome = score_model(model, settings, base=scoring.base)
        outcomes.append(outcome)
        if outcome.metrics:
            print_metric_table(outcome.metrics, f"{settings.task} on {model}")
        print(f"run folder: {outcome.run_dir}")
    scored = sum(not o.skipped for o in outcomes)
    print(
        f"{scored} scored, {len(outcomes) - scored} skipped (already scored); runs in "
        f"{settings.output}"
    )
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from harness_ext.workflows.leaderboard import build_leaderboard

    board = build_leaderboard(args.runs, args.output, title=args.title, rank_by=args.rank_by)
    print(board.markdown)
    print(f"wrote {', '.join(str(p) for p in board.files)}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    import shlex

    from harness_ext.workflows.audit import run_audit

    scoring, audit = args.parser.dataclasses_from(args)
    command = "lm-unlearn " + " ".join(shlex.quote(a) for a in getattr(args, "argv", []))
    settings = audit.settings(args.model, scoring, command)
    report = run_audit(settings)
    print("\n" + report.markdown)
    print(f"wrote {', '.join(str(p) for p in report.files)}; runs in {settings.scoring.output}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from unlearn_methods.finetune import finetune

    (config,) = args.parser.dataclasses_from(args)
    config.check_required()
    output = finetune(config)
    if os.environ.get("RANK", "0") == "0":
        print(f"wrote {output} (card: {output / 'finetune_card.json'})")
    return 0


def cmd_continual(args: argparse.Namespace) -> int:
    from harness_ext.workflows.continual import check_per_request_fields, run_continual, to_markdown

    check_per_request_fields(
        {
            name
            for name in args.parser.field_dests()
            if getattr(args, name) != args.parser.get_default(name)
        }
    )
    settings, config = args.parser.dataclasses_from(args)
    config.check_required()
    table = run_continual(settings, config)
    import pandas as pd

    print(to_markdown(pd.DataFrame(table)))
    output = config.output_dir
    print(f"wrote {output}/continual.csv, continual.md, continual.html; runs in {output}/runs")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from harness_ext.workflows.doctor import gather, report

    rows = gather(args.embedding_model, args.nli_model, args.device, args.data_dir)
    print(report(rows))
    failed = [name for name, ok, _ in rows if not ok]
    if failed:
        print(f"\n{len(failed)} problem(s): {', '.join(failed)}")
    return 1 if failed else 0


def cmd_tasks_path(args: argparse.Namespace) -> int:
    from harness_ext.lm_eval_plugin.autoload import project_tasks_dir

    print(project_tasks_dir())
    return 0


def cmd_eval(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Run lm-eval's CLI with the project's tasks on the include path (no autoload needed)."""
    import harness_ext.lm_eval_plugin.backend  # noqa: F401  (registers --model hf-unlearn)
    from harness_ext.lm_eval_plugin.autoload import project_tasks_dir

    argv = list(extra)
    if "--include_path" not in argv:
        argv += ["--include_path", project_tasks_dir()]
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *argv]
    cli_evaluate()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from harness_ext.workflows.demo import run_demo

    (arguments,) = args.parser.dataclasses_from(args)
    run_demo(arguments.settings())
    return 0


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
        "lm-unlearn demo --no-audit --no-matching",
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
        help="fine-tune, unlearn, score and rank on the packaged SmolLM2 (CPU, offline)",
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
