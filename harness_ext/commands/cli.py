"""The ``lm-unlearn`` command line.

lm-unlearn score MODEL... [--base BASE] [--split forget01] [--output results/runs]
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
from harness_ext.lm_eval_plugin import DEFAULT_BACKEND


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
    from harness_ext.workflows.score_inputs import ScoreSettings, expand_models
    from tofu_tasks.options import parse_metadata

    metadata = parse_metadata(args.metadata)
    if args.max_rows_per_set is not None:
        metadata["max_rows_per_set"] = args.max_rows_per_set
    settings = ScoreSettings(
        split=args.split,
        backend=args.backend,
        model_args=args.model_args or "",
        prompt_format=args.prompt_format,
        retain_reference=args.reference,
        pre_unlearning_reference=args.pre_unlearning_reference,
        metadata=metadata,
        label=args.label,
        batch_size=args.batch_size,
        device=args.device,
        output=args.output,
        force=args.force,
    )
    models = expand_models([*args.models, *args.more_models], args.list)
    if args.label and len(models) > 1:
        raise ValueError("--label names one model; score several models without it")
    if args.base and len(models) > 1:
        raise ValueError(
            "--base applies to one adapter; give several adapters their base in config"
        )
    outcomes = []
    for index, model in enumerate(models, 1):
        if len(models) > 1:
            print(f"[{index}/{len(models)}] {model}")
        outcome = score_model(model, settings, base=args.base)
        outcomes.append(outcome)
        if outcome.metrics:
            print_metric_table(outcome.metrics, f"{settings.task} on {model}")
        print(f"run folder: {outcome.run_dir}")
    scored = sum(not o.skipped for o in outcomes)
    print(
        f"{scored} scored, {len(outcomes) - scored} skipped (already scored); runs in {args.output}"
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
    from harness_ext.workflows.audit_settings import AuditSettings, RelearnSettings
    from harness_ext.workflows.score_inputs import ScoreSettings
    from tofu_tasks.options import parse_metadata

    metadata = parse_metadata(args.metadata)
    if args.max_rows_per_set is not None:
        metadata["max_rows_per_set"] = args.max_rows_per_set
    scoring = ScoreSettings(
        split=args.split, backend=args.backend, model_args=args.model_args or "",
        prompt_format=args.prompt_format, retain_reference=args.reference,
        pre_unlearning_reference=args.pre_unlearning_reference, metadata=metadata,
        label=args.label, batch_size=args.batch_size, device=args.device, output=args.runs,
        force=args.force,
    )  # fmt: skip
    relearn = RelearnSettings(
        rows=args.relearn_rows, split=args.relearn_split, steps=args.relearn_steps,
        learning_rate=args.relearn_lr, batch_size=args.relearn_batch_size,
        lora=args.relearn_lora, seed=args.relearn_seed,
    )  # fmt: skip
    settings = AuditSettings(
        model=args.model, scoring=scoring, attacks=args.attacks, target=args.target,
        control=args.control, control_label=args.control_label,
        output=args.output, models_dir=args.models_dir, relearn=relearn, base=args.base,
        bits=args.bits,
        command="lm-unlearn " + " ".join(shlex.quote(a) for a in getattr(args, "argv", [])),
    )  # fmt: skip
    report = run_audit(settings)
    print("\n" + report.markdown)
    print(f"wrote {', '.join(str(p) for p in report.files)}; runs in {args.runs}")
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
    from harness_ext.workflows.demo import DemoSettings, run_demo

    settings = DemoSettings(output=args.output)
    if args.retain_rows is not None:
        settings.retain_rows = args.retain_rows
    if args.utility_rows is not None:
        settings.utility_rows = args.utility_rows
    if args.methods:
        settings.methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if args.model:
        settings.model = args.model
    if args.audit:
        settings.audit = args.audit
    if args.no_audit:
        settings.audit = None
    if args.no_matching:
        settings.match_forgetting = False
    run_demo(settings)
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
        "--split forget10",
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


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="lm-unlearn", description="Machine unlearning of LLMs on lm-evaluation-harness."
    )
    parser.add_argument("--version", action="version", version=f"lm-unlearn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    agg = sub.add_parser(
        "aggregate", help="compute every metric from existing per-sample logs (no model needed)"
    )
    agg.add_argument(
        "--legacy-logs", required=True, help="a TOFU legacy log directory (the four eval_*.json)"
    )
    agg.add_argument(
        "--reference-logs",
        help="the retain model's legacy log directory (or a samples/results file): forget quality",
    )
    agg.add_argument(
        "--pre-unlearning-logs",
        help="outputs of the model before unlearning (legacy log directory or reference file): "
        "cosine similarity and entailment on Real Authors / World Facts",
    )
    agg.add_argument(
        "--tokenizer", help="tokenizer of the logged model (dir, hub id or .gguf): token entropy"
    )
    agg.add_argument("--embedding-model", help="sentence-embedding model (cosine similarity)")
    agg.add_argument("--nli-model", help="NLI classifier (entailment)")
    agg.add_argument("--bertscore", action="store_true", help="also report <set>_bertscore_f1")
    agg.add_argument("--bertscore-model", help="model of BERTScore (default roberta-large)")
    agg.add_argument("--device", help="device of the auxiliary models")
    agg.add_argument("--json", action="store_true", help="print JSON instead of a table")
    agg.set_defaults(handler=cmd_aggregate)

    demo = sub.add_parser(
        "demo",
        help="fine-tune, unlearn, score and rank on the packaged SmolLM2 (CPU, offline)",
    )
    demo.add_argument("--output", type=Path, default=Path("results/demo"))
    demo.add_argument("--model", help="base model (default: the packaged SmolLM2-135M-Instruct)")
    demo.add_argument("--methods", help="comma-separated (default ME+GD,IDK+AP,GA+GD)")
    demo.add_argument("--retain-rows", type=int, help="retain rows learned and scored (20)")
    demo.add_argument(
        "--utility-rows", type=int, help="Real Authors / World Facts rows scored (20)"
    )
    demo.add_argument(
        "--audit",
        help="the attacks of the audit of every unlearned model (lm-unlearn audit; default "
        "relearn; also quantize, paraphrase)",
    )
    demo.add_argument("--no-audit", action="store_true", help="skip the audit")
    demo.add_argument(
        "--no-matching",
        action="store_true",
        help="train every method for its full epochs instead of stopping it at the retain "
        "model's forget ROUGE-L (matched forgetting)",
    )
    demo.set_defaults(handler=cmd_demo)

    ref = sub.add_parser(
        "reference",
        help="score a model before unlearning once and store its outputs and truth ratios",
        description="The file serves as pre_unlearning_reference (cosine similarity and "
        "entailment on Real Authors / World Facts) and as retain_reference (forget quality).",
    )
    ref.add_argument("--model", help="hub id or local path of the model before unlearning")
    ref.add_argument(
        "--model-args", default="", help="more lm-eval model args, e.g. dtype=bfloat16,peft=DIR"
    )
    ref.add_argument(
        "--backend",
        default=DEFAULT_BACKEND,
        help=f"lm-eval model backend: {DEFAULT_BACKEND} (default), hf, vllm, ...",
    )
    ref.add_argument("--tasks", default="tofu_forget01_unlearn", help="comma-separated tasks")
    ref.add_argument("--apply-chat-template", action="store_true")
    ref.add_argument("--prompt-format", help="plain, llama2 or phi (without a chat template)")
    ref.add_argument("--metadata", help="task options as JSON (rows, max_rows_per_set, ...)")
    ref.add_argument("--batch-size", default="auto")
    ref.add_argument("--device", help="cuda, cuda:0 or cpu (default: cuda if available)")
    ref.add_argument("--from-samples", help="convert an existing samples/results file instead")
    ref.add_argument("--output", required=True, type=Path, help="reference file to write (JSON)")
    ref.set_defaults(handler=cmd_reference)

    from harness_ext.workflows.continual import PER_REQUEST_FIELDS, ContinualSettings
    from unlearn_methods.config import FinetuneConfig, UnlearnConfig

    library_note = (
        "Every other transformers TrainingArguments field is accepted too, as --name value "
        "(e.g. --lr_scheduler_type cosine, --report_to wandb, --deepspeed ds.json)."
    )
    trainer = sub.add_parser(
        "train",
        dataclass_types=[UnlearnConfig],
        help="unlearn a TOFU forget split with a registered method; writes a checkpoint",
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
        help="serve forget10 as a sequence of forget requests, scoring after each",
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
        help="fine-tune a model on TOFU splits (make a target or a retain model)",
        description="Plain supervised fine-tuning on TOFU question/answer pairs, the step before "
        "unlearning. --data lists splits, each optionally cut by a row slice (split[a:b]). "
        + library_note,
    )
    tune.set_defaults(handler=cmd_finetune, parser=tune)

    score = sub.add_parser(
        "score",
        help="score checkpoints, adapters or hub models on tofu_*_unlearn; skips scored ones",
        description="Each model gets a run folder under --output with lm-eval's results and "
        "samples files and manifest.json. A folder of checkpoints scores each one.",
    )
    score.add_argument(
        "models", nargs="*", help="hub id, checkpoint or adapter folder, or a folder of them"
    )
    score.add_argument("--list", help="file with one model per line")
    score.add_argument(
        "--label",
        help="the model's name in tables (default: the method from its training card, else its "
        "folder or hub name); shown as 'LABEL · BASE MODEL · SPLIT'",
    )
    score.add_argument(
        "--base", help="base model of a PEFT adapter (default: from adapter_config.json)"
    )
    score.add_argument("--split", default="forget01", choices=["forget01", "forget05", "forget10"])
    score.add_argument(
        "--model",
        dest="more_models",
        metavar="MODEL",
        action="append",
        default=[],
        help="a model to score, as the positional MODELS (may be repeated)",
    )
    score.add_argument(
        "--backend",
        default=DEFAULT_BACKEND,
        help=f"lm-eval backend: {DEFAULT_BACKEND} (default), hf, vllm, ...",
    )
    score.add_argument("--model-args", help="more lm-eval model arguments, e.g. dtype=bfloat16")
    score.add_argument(
        "--prompt-format",
        help="chat, plain, llama2 or phi (default: chat if the tokenizer has a template, else plain)",
    )
    score.add_argument("--reference", help="retain-model reference (forget quality)")
    score.add_argument("--pre-unlearning-reference", help="the model's outputs before unlearning")
    score.add_argument("--metadata", help="task options as JSON (docs/scoring.md lists them)")
    score.add_argument("--max-rows-per-set", type=int, help="score at most N rows of each set")
    score.add_argument("--batch-size", default="auto")
    score.add_argument("--device", help="cuda, cuda:0 or cpu (default: cuda if available)")
    score.add_argument("--output", type=Path, default=Path("results/runs"))
    score.add_argument("--force", action="store_true", help="score again even if already scored")
    score.set_defaults(handler=cmd_score)

    board = sub.add_parser(
        "leaderboard",
        help="LEADERBOARD.md, leaderboard.csv and leaderboard.html from run folders",
    )
    board.add_argument("runs", nargs="+", type=Path, help="folders of runs or lm-eval results")
    board.add_argument("--output", type=Path, default=Path("results"))
    board.add_argument("--title", default="TOFU unlearning leaderboard")
    board.add_argument(
        "--rank-by",
        help="metric ranking each table (default: forget efficacy, else forget quality, else MU-9)",
    )
    board.set_defaults(handler=cmd_leaderboard)

    add_audit_parser(sub)

    doctor = sub.add_parser(
        "doctor", help="versions, autoload, data and metric models, for bug reports"
    )
    doctor.add_argument(
        "--embedding-model", help="check this embedding model instead of the default"
    )
    doctor.add_argument("--nli-model", help="check this NLI model instead of the default")
    doctor.add_argument("--device", help="device of the metric models")
    doctor.add_argument("--data-dir", help="TOFU directory (default: $TOFU_DATA_DIR or the hub)")
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


def add_audit_parser(sub) -> None:
    audit = sub.add_parser(
        "audit",
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
    audit.add_argument("--attacks", default="relearn,quantize,paraphrase",
                       help="comma-separated: relearn, quantize, paraphrase (default: all)")  # fmt: skip
    audit.add_argument("--target", help="the model before unlearning (a model, or its scoring "
                       "run folder or results file): recovery")  # fmt: skip
    audit.add_argument("--control", help="the retain model (never trained on the forget rows): "
                       "relearning runs on it too, and its gain is reported beside")  # fmt: skip
    audit.add_argument("--control-label", help="the control's name in tables")
    audit.add_argument("--split", default="forget01", choices=["forget01", "forget05", "forget10"])
    audit.add_argument("--output", type=Path, default=Path("results/audit"), help="the table")
    audit.add_argument("--runs", type=Path, default=Path("results/runs"),
                       help="scoring runs (a leaderboard reads them; default results/runs)")  # fmt: skip
    audit.add_argument("--models-dir", type=Path,
                       help="attacked models (default $LM_UNLEARN_CACHE/audit)")  # fmt: skip
    audit.add_argument("--base", help="base model of a PEFT adapter given as MODEL")
    audit.add_argument("--label", help="the model's name in tables")
    audit.add_argument("--relearn-split", default="same-authors",
                       choices=["same-authors", "other-authors"],
                       help="same-authors (default): relearn the first half of each author's "
                       "rows, score the second half; other-authors: relearn the first half of "
                       "the authors, score the others")  # fmt: skip
    audit.add_argument("--relearn-rows", help="forget rows relearned by hand, start:stop "
                       "touching one end; the other rows are scored")  # fmt: skip
    audit.add_argument("--relearn-steps", type=int, default=10, help="optimiser steps (10)")
    audit.add_argument("--relearn-lr", type=float, default=1e-5, help="constant rate (1e-5)")
    audit.add_argument("--relearn-batch-size", type=int, default=4, help="rows per step (4)")
    audit.add_argument("--relearn-lora", action="store_true", help="relearn a LoRA adapter")
    audit.add_argument("--relearn-seed", type=int, default=42)
    audit.add_argument("--bits", default="8,4", help="quantize: weight bits, 8 and/or 4")
    audit.add_argument("--backend", default=DEFAULT_BACKEND,
                       help=f"lm-eval backend: {DEFAULT_BACKEND} (default), hf, ...")  # fmt: skip
    audit.add_argument("--model-args", help="more lm-eval model arguments")
    audit.add_argument("--prompt-format", help="chat, plain, llama2 or phi (default: detected)")
    audit.add_argument("--reference", help="retain-model reference (forget quality)")
    audit.add_argument("--pre-unlearning-reference", help="the model's outputs before unlearning")
    audit.add_argument("--metadata", help="task options as JSON (docs/scoring.md lists them)")
    audit.add_argument("--max-rows-per-set", type=int, help="score at most N rows of each set")
    audit.add_argument("--batch-size", default="auto")
    audit.add_argument("--device", help="cuda, cuda:0 or cpu (default: cuda if available)")
    audit.add_argument("--force", action="store_true", help="score again even if already scored")
    audit.set_defaults(handler=cmd_audit)


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
    parser = build_parser()
    if argv[:1] == ["train"]:
        apply_config_file(parser.commands["train"], argv[1:])
    args = parser.parse_args(argv)
    args.argv = list(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # bitsandbytes (the audit's quantiser) logs at import, on CPUs with AVX512-BF16, that an
    # optional kernel from the hub is missing; it falls back to its own, so the line is noise
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
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
