"""What the per-token metrics cost under a backend without per-token numbers.

Min-K%, extraction strength and exact memorisation need one log-prob and one is-argmax flag per
answer token. ``hf-unlearn`` returns them with each answer; lm-eval's ``hf`` (and ``vllm``)
return one sum and one flag per request, so the tasks ask one request per scored token of every
forget and holdout answer (``token_scores: auto``). This scores the forget and holdout sets
(``sets: ["forget", "holdout"]``, ground truths only) of a model three ways, in one process:

* ``hf``, ``token_scores: off``: LOSS and ZLib only (the cost without the per-token metrics);
* ``hf``, ``token_scores: auto``: every metric but Min-K%++ (it needs the whole distribution);
* ``hf-unlearn``: every metric, the per-token numbers from its own forward passes;

and prints requests, seconds and the metrics, with the largest per-row difference between the
two ways of getting Min-K%.

    python benchmarks/token_scores_cost.py [--model PATH] [--rows 40] [--batch-size 16]

Default model: the packaged SmolLM2-135M-Instruct (the demo's base model).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
TASK = "tofu_forget01_unlearn"
KEYS = ("mia_loss_auc", "mia_min_k_auc", "mia_min_k_plus_plus_auc", "forget_extraction_strength",
        "forget_exact_memorization")  # fmt: skip


def run(model: str, backend: str, token_scores: str, rows: int, batch_size: int) -> dict:
    from harness_ext.lm_eval_plugin.results import task_metrics
    from harness_ext.lm_eval_plugin.run import run_tasks
    from harness_ext.lm_eval_plugin.task_provenance import read_provenance

    metadata = {
        "sets": ["forget", "holdout"],
        "truth_ratio": False,
        "max_rows_per_set": {"forget": rows, "holdout": rows},
        "holdout": f"retain_perturbed[{400 - rows}:400]",
        "embedding_model": "none",
        "nli_model": "none",
        "token_scores": token_scores,
    }
    started = time.time()
    results = run_tasks({"pretrained": model}, [TASK], backend=backend, metadata=metadata,
                        batch_size=batch_size, device="cpu")  # fmt: skip
    seconds = time.time() - started
    record = read_provenance(results, TASK)
    samples = results["samples"][TASK]
    requests = sum(len(s["arguments"]) for s in samples)
    per_row = {(s["doc"]["set"], s["doc"]["row"]): s["mia_min_k_auc"]["score"] for s in samples}
    return {"seconds": seconds, "requests": requests, "metrics": task_metrics(results, TASK),
            "token_scores": record.token_scores or {}, "min_k": per_row}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder (default: the packaged SmolLM2)")
    parser.add_argument("--rows", type=int, default=40, help="forget and holdout rows (40)")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    from harness_ext.assets import packaged_smollm2

    model = args.model or str(packaged_smollm2())
    ways = [("hf", "off"), ("hf", "auto"), ("hf-unlearn", "auto")]
    done = {way: run(model, *way, args.rows, args.batch_size) for way in ways}
    print(f"\n{model}: {args.rows} forget + {args.rows} holdout rows, batch {args.batch_size}\n")
    print("| backend | token_scores | requests | seconds | " + " | ".join(KEYS) + " |")
    print("|---" * (4 + len(KEYS)) + "|")
    for (backend, option), out in done.items():
        values = []
        for key in KEYS:
            value = out["metrics"][key]
            values.append(f"{value:.4f}" if isinstance(value, float) else "N/A")
        print(f"| {backend} | {option} | {out['requests']} | {out['seconds']:.1f} | "
              + " | ".join(values) + " |")  # fmt: skip
    probes, fast = done[("hf", "auto")]["min_k"], done[("hf-unlearn", "auto")]["min_k"]
    gaps = [abs(probes[k] - fast[k]) for k in fast if isinstance(probes.get(k), float)]
    info = done[("hf", "auto")]["token_scores"]
    extra = done[("hf", "auto")]["seconds"] - done[("hf", "off")]["seconds"]
    print(f"\nper-token requests under hf: {info.get('per_token_requests')} "
          f"({info.get('shared_characters', 0)} tokens share a character with a neighbour), "
          f"{extra:.1f} s more than without them; largest per-row Min-K% difference to "
          f"hf-unlearn: {max(gaps):.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
