"""What each ``lm-unlearn`` command does with its parsed options: one handler per command,
each handing the options to its workflow and printing what the user needs to see."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


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

    board = build_leaderboard(args.runs, args.output, title=args.title, rank_by=args.rank_by,
                              utility_tolerance=args.utility_tolerance)  # fmt: skip
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
    from harness_ext.workflows.demo_lume import LumeDemoSettings, run_lume_demo

    (arguments,) = args.parser.dataclasses_from(args)
    try:
        settings = arguments.settings()
    except ValueError as err:
        args.parser.error(str(err))
    if isinstance(settings, LumeDemoSettings):
        run_lume_demo(settings)
    else:
        run_demo(settings)
    return 0
