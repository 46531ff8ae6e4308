"""The ``lm-unlearn`` command line.

lm-unlearn aggregate --legacy-logs DIR [--reference-logs DIR] [--json]
lm-unlearn tasks-path
lm-unlearn eval [lm_eval arguments...]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _format_value(value: Any) -> str:
    if not isinstance(value, float):
        return str(value)
    return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.3e}"


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
        return AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
    return AutoTokenizer.from_pretrained(path)


def cmd_aggregate(args: argparse.Namespace) -> int:
    from harness_ext import legacy_logs
    from harness_ext.output_scoring import OutputScorer, with_output_scores
    from harness_ext.reference import load_reference
    from harness_ext.scoring import summarize

    samples = legacy_logs.directory_samples(args.legacy_logs)
    retain = load_reference(args.reference_logs).forget_ratios if args.reference_logs else None
    pre_unlearning = None
    if args.pre_unlearning_logs:
        reference = load_reference(args.pre_unlearning_logs)
        pre_unlearning = {(r.set_name, r.question): r.generation for r in reference.rows}
    scorer = OutputScorer.load(
        tokenizer=load_tokenizer_path(args.tokenizer) if args.tokenizer else None,
        embedding_model=args.embedding_model,
        nli_model=args.nli_model,
        device=args.device,
        bertscore=args.bertscore,
        bertscore_model=args.bertscore_model,
        tokenizer_name=args.tokenizer,
    )
    metrics = summarize(with_output_scores(samples, scorer, pre_unlearning), retain)
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
    from harness_ext import reference as R
    from harness_ext.provenance import git_commit, model_fingerprint, package_versions

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
    from harness_ext.evaluate import parse_model_args, run_tasks

    model_args = {"pretrained": args.model, **parse_model_args(args.model_args)}
    metadata = {**json.loads(args.metadata or "{}"), "embedding_model": "none", "nli_model": "none"}
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


def cmd_tasks_path(args: argparse.Namespace) -> int:
    from harness_ext.autoload import project_tasks_dir

    print(project_tasks_dir())
    return 0


def cmd_eval(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Run lm-eval's CLI with the project's tasks on the include path (no autoload needed)."""
    from harness_ext.autoload import project_tasks_dir

    argv = list(extra)
    if "--include_path" not in argv:
        argv += ["--include_path", project_tasks_dir()]
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *argv]
    cli_evaluate()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from harness_ext.demo import run_demo

    run_demo(rows_per_set=args.rows_per_set, output=args.output)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lm-unlearn", description="Machine unlearning of LLMs on lm-evaluation-harness."
    )
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

    demo = sub.add_parser("demo", help="score the packaged SmolLM2 on tofu_forget01_unlearn (CPU)")
    demo.add_argument("--rows-per-set", type=int, default=5, help="rows of each eval set")
    demo.add_argument("--output", type=Path, default=Path("results/demo/runs"))
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
    ref.add_argument("--backend", default="hf", help="lm-eval model backend (hf, vllm, ...)")
    ref.add_argument("--tasks", default="tofu_forget01_unlearn", help="comma-separated tasks")
    ref.add_argument("--apply-chat-template", action="store_true")
    ref.add_argument("--prompt-format", help="plain, llama2 or phi (without a chat template)")
    ref.add_argument("--metadata", help="task options as JSON (rows, max_rows_per_set, ...)")
    ref.add_argument("--batch-size", default="auto")
    ref.add_argument("--device", help="cuda, cuda:0 or cpu (default: cuda if available)")
    ref.add_argument("--from-samples", help="convert an existing samples/results file instead")
    ref.add_argument("--output", required=True, type=Path, help="reference file to write (JSON)")
    ref.set_defaults(handler=cmd_reference)

    path = sub.add_parser("tasks-path", help="print the folder holding the task YAMLs")
    path.set_defaults(handler=cmd_tasks_path)

    run = sub.add_parser(
        "eval",
        help="lm_eval with the project's tasks on --include_path (all lm_eval arguments pass)",
        add_help=False,
    )
    run.set_defaults(handler=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["eval"]:
        return cmd_eval(argparse.Namespace(), argv[1:])
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, OSError) as err:
        print(f"lm-unlearn {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
