"""Step time and peak memory of every unlearning method, against plain fine-tuning of the same batch.

Each method runs in its own process (so peak memory is its own) through the same trainer that
``lm-unlearn train`` uses, on TOFU forget01 with the packaged SmolLM2-135M-Instruct by default. The
floor is ``SFT+GD``: plain supervised fine-tuning (next-token loss) on the same forget and retain
batches, one forward and backward pass per example set, no reference model. It is registered here,
not in the project, because it unlearns nothing.

    python benchmarks/train_speed.py [--methods ME+GD,IDK+AP,GA+GD] [--batch-size 4] [--steps 4]
                                     [--model PATH] [--lora] [--bf16] [--gradient-checkpointing]

Reported per method: median seconds per optimizer step (batch of --batch-size examples per example
set, no gradient accumulation, after --warmup steps), the ratio to the SFT floor measured in the
same run, peak memory (CUDA: peak allocated; CPU: the process's peak resident set and its rise over
the loaded model), the example sets each step reads and whether a reference model is in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_METHODS = (
    "SFT+GD",
    "GA+GD",
    "ME+GD",
    "IDK+AP",
    "GA",
    "GA+KL",
    "NPO+GD",
    "NPO+KL",
    "DPO+GD",
    "IDK+GD",
    "SimNPO+GD",
    "RMU",
)


def register_sft_floor() -> None:
    from unlearn_methods import forget_term

    @forget_term("SFT", needs=("forget",), description="benchmark floor: fine-tune on forget")
    def supervised(ctx):
        return ctx.policy("forget").mean_token_nll


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(args: argparse.Namespace) -> dict:
    """Train one method for warmup + steps optimizer steps and time them."""
    import torch
    from transformers import TrainerCallback

    from unlearn_methods.config import UnlearnConfig
    from unlearn_methods.train import build_run

    register_sft_floor()
    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    timings: list[float] = []
    shapes: list[int] = []
    state = {}

    class StepTimer(TrainerCallback):
        def on_train_begin(self, *a, **k):
            state["rss_at_start"] = rss_mib()
            if cuda:
                torch.cuda.reset_peak_memory_stats()

        def on_step_begin(self, *a, **k):
            if cuda:
                torch.cuda.synchronize()
            state["t0"] = time.perf_counter()

        def on_step_end(self, *a, **k):
            if cuda:
                torch.cuda.synchronize()
            timings.append(time.perf_counter() - state["t0"])

    with tempfile.TemporaryDirectory() as out:
        options = UnlearnConfig(
            method=args.worker,
            model=args.model,
            output_dir=out,
            forget="forget01",
            data_dir=args.data_dir,
            lora=args.lora,
            bf16=args.bf16 or None,
            gradient_checkpointing=args.gradient_checkpointing,
            per_device_train_batch_size=args.batch_size,
            effective_batch_size=args.batch_size,
            max_steps=args.warmup + args.steps,
            max_length=args.max_length,
            save_steps=10**9,  # no checkpoint inside the timed window
            pad_token="eos" if args.pad_eos else None,
        )
        run = build_run(options, callbacks=[StepTimer()])
        trainer = run.trainer
        collate = trainer.data_collator

        def recording_collator(items):
            batch = collate(items)
            shapes.extend(v.shape[1] for k, v in batch.items() if k.endswith("_input_ids"))
            return batch

        trainer.data_collator = recording_collator
        trainer.train()
        method = trainer.method
        has_ref = getattr(trainer, "ref_model", None) is not None
    timed = timings[args.warmup :]
    result = {
        "method": method.name,
        "sets": list(method.needs),
        "reference": "adapter off" if (method.needs_reference and args.lora) else has_ref,
        "seconds_per_step": statistics.median(timed),
        "mean_padded_length": statistics.mean(shapes) if shapes else 0,
        "device": "cuda" if cuda else "cpu",
    }
    if cuda:
        result["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["peak_mib"] = peak
        result["rise_mib"] = peak - state.get("rss_at_start", peak)
    return result


def run_all(args: argparse.Namespace) -> list[dict]:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if "SFT+GD" not in methods:
        methods.insert(0, "SFT+GD")
    rows = []
    for method in methods:
        command = [sys.executable, __file__, "--worker", method, *forwarded(args)]
        started = time.time()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        if done.returncode != 0 or not lines:
            print(f"{method}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(lines[-1]))
        print(
            f"  {method}: {rows[-1]['seconds_per_step']:.2f} s/step "
            f"({time.time() - started:.0f} s with loading)",
            file=sys.stderr,
        )
    return rows


def forwarded(args: argparse.Namespace) -> list[str]:
    out = [
        "--model",
        args.model,
        "--batch-size",
        str(args.batch_size),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--max-length",
        str(args.max_length),
    ]
    if args.data_dir:
        out += ["--data-dir", args.data_dir]
    for flag in ("lora", "bf16", "gradient_checkpointing", "pad_eos"):
        if getattr(args, flag):
            out.append("--" + flag.replace("_", "-"))
    return out


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    floor = next((r for r in rows if r["method"] == "SFT+GD"), None)
    by_name = {r["method"]: r for r in rows}
    cpu = rows and rows[0]["device"] == "cpu"
    memory = "peak RSS MiB (rise)" if cpu else "peak allocated MiB"
    print(
        f"\nmodel {Path(args.model).name}, device {rows[0]['device'] if rows else '?'}, "
        f"batch {args.batch_size} per example set, no accumulation, "
        f"{'LoRA' if args.lora else 'full'}{', bf16' if args.bf16 else ''}"
        f"{', gradient checkpointing' if args.gradient_checkpointing else ''}; "
        f"median of {args.steps} steps after {args.warmup} warm-up"
    )
    print(
        f"\n| method | example sets | reference | padded tokens/example | s/step | × SFT | {memory} |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["seconds_per_step"] / floor["seconds_per_step"] if floor else float("nan")
        mem = f"{r['peak_mib']:.0f}" + (f" (+{r['rise_mib']:.0f})" if "rise_mib" in r else "")
        ref = (
            r["reference"]
            if isinstance(r["reference"], str)
            else ("yes" if r["reference"] else "no")
        )
        print(
            f"| {r['method']} | {', '.join(r['sets'])} | {ref} | {r['mean_padded_length']:.0f} | "
            f"{r['seconds_per_step']:.2f} | {ratio:.2f} | {mem} |"
        )
    base = by_name.get("GA+GD")
    if base:
        for name in ("ME+GD", "IDK+AP"):
            if name in by_name:
                print(
                    f"\n{name} / GA+GD step time: "
                    f"{by_name[name]['seconds_per_step'] / base['seconds_per_step']:.2f}",
                    end="",
                )
        print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--model", help="model path or hub id (default: the packaged SmolLM2)")
    parser.add_argument("--data-dir", default=os.environ.get("TOFU_DATA_DIR"))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=500)
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--pad-eos", action="store_true", help="pad with EOS (tokenizers w/o pad)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.model is None:
        from harness_ext.assets import packaged_smollm2

        args.model = str(packaged_smollm2())
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    rows = run_all(args)
    if not rows:
        return 1
    print_table(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
