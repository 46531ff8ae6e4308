"""The ``lm-unlearn`` command line.

lm-unlearn aggregate --legacy-logs DIR [--reference-logs DIR] [--json]
lm-unlearn tasks-path
lm-unlearn eval [lm_eval arguments...]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _format_value(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def print_metric_table(metrics: dict[str, Any], title: str | None = None) -> None:
    if title:
        print(title)
    width = max(len(name) for name in metrics)
    for name, value in metrics.items():
        print(f"  {name:<{width}}  {_format_value(value)}")


def cmd_aggregate(args: argparse.Namespace) -> int:
    from harness_ext import legacy_logs
    from harness_ext.reference import load_retain_reference
    from harness_ext.scoring import summarize

    samples = legacy_logs.directory_samples(args.legacy_logs)
    reference = load_retain_reference(args.reference_logs).ratios if args.reference_logs else None
    metrics = summarize(samples, reference)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print_metric_table(metrics, f"TOFU metrics of {args.legacy_logs}")
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
    agg.add_argument("--json", action="store_true", help="print JSON instead of a table")
    agg.set_defaults(handler=cmd_aggregate)

    demo = sub.add_parser("demo", help="score the packaged SmolLM2 on tofu_forget01_unlearn (CPU)")
    demo.add_argument("--rows-per-set", type=int, default=5, help="rows of each eval set")
    demo.add_argument("--output", type=Path, default=Path("results/demo/runs"))
    demo.set_defaults(handler=cmd_demo)

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
