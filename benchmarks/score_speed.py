"""Scoring speed of the project's lm-eval task against the usual TOFU evaluation loop.

Both paths score the same model on the same rows of ``tofu_forget01_unlearn`` (forget, retain,
real_authors, world_facts; plain prompt format, float32, CPU) and produce the TOFU per-row numbers:
the greedy generation and its ROUGE-L recall, the answer probability and the truth ratio.

* project: ``harness_ext.lm_eval_plugin.run.run_tasks`` (lm-eval in process, auxiliary metric models
  off), from the model directory to the aggregated metrics, through three backends (``--paths``):
  ``hf`` (lm-eval's stock backend), ``hf-unlearn`` (the project's backend: contexts and shared
  answer beginnings scored once, early-exit greedy decoding of up to 64 rows at once on CPU,
  prompt-lookup drafts) and ``hf-unlearn-no-lookup`` (the same with ``prompt_lookup_tokens=0``).
* baseline, "the usual TOFU evaluation loop", written out below with transformers and torch:
  per eval set, batched greedy ``model.generate`` with left padding (prompt + generation <= 200
  tokens per row, stopping at EOS), then a separate batched forward pass over prompt + answer
  for the answer, another for the paraphrase (forget/retain only; on real_authors/world_facts
  the base answer is the answer itself), and one per perturbed answer, each giving the mean
  token NLL of the continuation; then the metrics and per-set means. Nothing is shared between
  passes, as in TOFU's original evaluation code. The final formulas are the project's pure
  functions of ``harness_ext.metrics.tofu``; loading the model from its directory is timed too, as
  ``run_tasks`` loads it.

The script first checks that every path gives the baseline's numbers (identical generations,
equal ROUGE-L recall, probabilities and truth ratios within a float tolerance) and exits non-zero
if one does not (unless ``--no-check``); then it reports wall seconds of each path, each measured
after a one-row-per-set warm-up in the same process (the best of ``--repeats`` timed runs), and
the speed-up baseline / path. ``--batch-size`` is the baseline's batch and the project's
``batch_size`` (log-likelihood requests per forward pass).

    python benchmarks/score_speed.py [--models tiny,smollm2] [--rows-per-set 10] [--batch-size 8]
                                     [--paths hf,hf-unlearn-no-lookup,hf-unlearn] [--repeats 1]
                                     [--no-check]

``--demo [TARGET]`` times instead the scoring the demo does: its fine-tuned target (default: the
newest ``$LM_UNLEARN_CACHE/demo/target-*``, made by ``make demo``) on the demo's rows and task
options (holdout included), through lm-eval's ``hf`` with every metric (per-token numbers through
one request per scored token), ``hf`` without the per-token metrics (``token_scores: off``) and
``hf-unlearn``; it checks that every generation is identical and reports the largest per-row
difference of every metric, and prints each path's profile per phase (tokens fed to the model,
tokens/s, linear-layer FLOP/s as a share of this machine's float32 matmul peak, measured in the
same run). ``--dtype float64`` runs the models in float64: float32 sums taken in another order
(other batch shapes) move a truth ratio by up to ~1e-5, float64 ones by far less, so there every
per-row number must agree within 1e-6 (exit 1 otherwise); ``--rows N`` scores only the first N
rows of every set and of the holdout (float64 on CPU is slow), ``--demo-paths hf`` skips the
``token_scores: off`` path.

``--model`` / ``--models``: ``tiny`` (a random tiny Llama built in a temp dir, as the tests do),
``smollm2`` (default: the packaged SmolLM2-135M-Instruct) or a path to a Hugging Face model
directory. Set ``TOFU_DATA_DIR`` (and ``HF_HUB_OFFLINE=1`` without network).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TASK = "tofu_forget01_unlearn"
SPLIT = "forget01"
SETS = ("forget", "retain", "real_authors", "world_facts")
PROMPT = "Question: {question}\nAnswer:"  # the plain prompt format
CONTINUATION = " {answer}"
GENERATION_BUDGET = 200  # TOFU: prompt + generation tokens
# TOFU's rules per set: the paraphrase is the base answer of the truth ratio on forget/retain;
# real_authors/world_facts report the answer's probability normalised over the options.
PARAPHRASE_SETS = ("forget", "retain")
NORMALIZED_PROB_SETS = ("real_authors", "world_facts")
FORGET_FORM_SETS = ("forget",)  # truth ratio min(R, 1/R); the others max(0, 1 - 1/R)
REL_TOL, ABS_TOL = 1e-4, 1e-5
COMPARED = ("prob", "raw_truth_ratio", "truth_ratio")


@dataclass(frozen=True)
class RowScore:
    """The TOFU numbers of one row."""

    set_name: str
    row: int
    generation: str
    rougeL_recall: float
    prob: float
    raw_truth_ratio: float
    truth_ratio: float


# ---------------------------------------------------------------------------- project path
def run_project(
    model_dir: Path,
    rows: int,
    batch_size: int,
    backend: str = "hf-unlearn",
    model_args: dict[str, Any] | None = None,
) -> tuple[list[RowScore], dict]:
    """Score with the project's task through lm-eval; per-row scores and aggregate metrics."""
    from harness_ext.lm_eval_plugin.results import task_metrics
    from harness_ext.lm_eval_plugin.run import run_tasks

    metadata = {
        "max_rows_per_set": rows,
        "prompt_format": "plain",
        "embedding_model": "none",
        "nli_model": "none",
    }
    results = run_tasks(
        {"pretrained": str(model_dir), "dtype": "float32", **(model_args or {})},
        [TASK],
        backend=backend,
        metadata=metadata,
        apply_chat_template=False,
        batch_size=batch_size,
        device="cpu",
        log_samples=True,
    )
    scores = [_project_row(sample) for sample in results["samples"][TASK]]
    return scores, task_metrics(results, TASK)


def _project_row(sample: dict[str, Any]) -> RowScore:
    values = sample["model_utility"]
    return RowScore(
        set_name=sample["doc"]["set"],
        row=sample["doc"]["row"],
        generation=values["generation"],
        rougeL_recall=float(values["rougeL_recall"]),
        prob=float(values["prob"]),
        raw_truth_ratio=float(values["raw_truth_ratio"]),
        truth_ratio=float(values["truth_ratio"]),
    )


# ---------------------------------------------------------------------------- baseline path
def run_baseline(model_dir: Path, rows: int, batch_size: int) -> list[RowScore]:
    """The usual TOFU loop: per set, generate, then one forward pass per kind of answer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tofu_tasks.data import build_eval_docs

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    docs = build_eval_docs(SPLIT, "legacy", max_rows_per_set=rows)
    scores: list[RowScore] = []
    with torch.inference_mode():
        for set_name in SETS:
            set_docs = [doc for doc in docs if doc["set"] == set_name]
            scores += score_set(model, tokenizer, set_name, set_docs, batch_size)
    return scores


def score_set(model, tokenizer, set_name: str, docs: list[dict], batch_size: int) -> list[RowScore]:
    """TOFU's numbers for the rows of one eval set."""
    from harness_ext.metrics import tofu as M

    prompts = [PROMPT.format(question=doc["question"]) for doc in docs]
    generations = generate(model, tokenizer, prompts, batch_size)
    answer = answer_nlls(model, tokenizer, prompts, [d["answer"] for d in docs], batch_size)
    base = answer
    if set_name in PARAPHRASE_SETS:
        base = answer_nlls(model, tokenizer, prompts, [d["base_answer"] for d in docs], batch_size)
    n_perturbed = len(docs[0]["perturbed_answers"]) if docs else 0
    perturbed = [
        answer_nlls(
            model, tokenizer, prompts, [d["perturbed_answers"][j] for d in docs], batch_size
        )
        for j in range(n_perturbed)
    ]
    scores = []
    for i, doc in enumerate(docs):
        others = [nlls[i] for nlls in perturbed]
        ratio = M.raw_truth_ratio(base[i], others)
        if set_name in NORMALIZED_PROB_SETS:
            prob = M.normalized_answer_prob(answer[i], others)
        else:
            prob = M.length_normalized_prob(answer[i])
        if set_name in FORGET_FORM_SETS:
            truth_ratio = M.truth_ratio_forget(ratio)
        else:
            truth_ratio = M.truth_ratio_utility(ratio)
        rouge = M.rouge_l_recall(generations[i], doc["answer"])
        scores.append(
            RowScore(set_name, doc["row"], generations[i], rouge, prob, ratio, truth_ratio)
        )
    return scores


def batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def generate(model, tokenizer, prompts: list[str], batch_size: int) -> list[str]:
    """Greedy generations, prompt + generation <= GENERATION_BUDGET tokens per row, cut at EOS."""
    tokenizer.padding_side = "left"
    texts = []
    for batch in batches(prompts, batch_size):
        inputs = tokenizer(list(batch), return_tensors="pt", padding=True)
        budgets = [max(1, GENERATION_BUDGET - int(n)) for n in inputs["attention_mask"].sum(1)]
        output = model.generate(
            **inputs,
            max_new_tokens=max(budgets),
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()
        texts += [
            _decode(tokenizer, ids[:budget])
            for ids, budget in zip(new_tokens, budgets, strict=True)
        ]
    return texts


def _decode(tokenizer, ids: list[int]) -> str:
    if tokenizer.eos_token_id in ids:
        ids = ids[: ids.index(tokenizer.eos_token_id)]
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def answer_nlls(
    model, tokenizer, prompts: list[str], answers: list[str], batch_size: int
) -> list[float]:
    """Mean token NLL of each answer after its prompt: one batched forward pass per batch.

    The scored tokens are TOFU's labels: those of tok(prompt + answer) after the first
    len(tok(prompt)), plus the EOS appended after them.
    """
    import torch

    pairs = list(zip(prompts, answers, strict=True))
    nlls: list[float] = []
    for batch in batches(pairs, batch_size):
        texts = [prompt + CONTINUATION.format(answer=answer) for prompt, answer in batch]
        rows = [ids + [tokenizer.eos_token_id] for ids in tokenizer(texts)["input_ids"]]
        width = max(len(ids) for ids in rows)
        input_ids = torch.tensor(
            [ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids in rows]
        )
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in rows])
        inputs = {"input_ids": input_ids, "attention_mask": mask}
        prompt_lengths = [len(ids) for ids in tokenizer([p for p, _ in batch])["input_ids"]]
        labels = input_ids.masked_fill(mask == 0, -100)
        for row, n_prompt in enumerate(prompt_lengths):
            labels[row, :n_prompt] = -100
        logits = model(**inputs).logits[:, :-1].float()
        targets = labels[:, 1:]
        # Class dimension last: cross_entropy over (batch, vocab, length) logits, as TOFU's code
        # calls it, is ~1e-4 less accurate in float32 on CPU.
        token_nll = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="none"
        ).view_as(targets)
        counts = (targets != -100).sum(1)
        nlls += (token_nll.sum(1) / counts).tolist()
    return nlls


def set_means(scores: list[RowScore]) -> dict[str, float]:
    """Per-set means, named as the task reports them ("<set>_<metric>")."""
    means = {}
    for set_name in SETS:
        rows = [s for s in scores if s.set_name == set_name]
        for metric in ("rougeL_recall", "prob", "truth_ratio"):
            values = [getattr(s, metric) for s in rows]
            if values:
                means[f"{set_name}_{metric}"] = sum(values) / len(values)
    return means


# ---------------------------------------------------------------------------- agreement
def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def check_agreement(
    baseline: list[RowScore], project: list[RowScore], project_metrics: dict[str, Any]
) -> bool:
    """Print per-set agreement of the two paths; True when every row and mean agrees."""
    by_key = {(s.set_name, s.row): s for s in project}
    ok = len(baseline) == len(project) and all((s.set_name, s.row) in by_key for s in baseline)
    if not ok:
        print(f"!! the paths scored different rows: {len(baseline)} vs {len(project)}")
        return False
    for set_name in SETS:
        pairs = [(s, by_key[(s.set_name, s.row)]) for s in baseline if s.set_name == set_name]
        ok &= _report_set(set_name, pairs)
    for name, value in set_means(baseline).items():
        reported = project_metrics.get(name)
        if not isinstance(reported, (int, float)) or not close(value, float(reported)):
            print(f"!! {name}: baseline mean {value!r}, project reports {reported!r}")
            ok = False
    return ok


def _report_set(set_name: str, pairs: list[tuple[RowScore, RowScore]]) -> bool:
    agree = 0
    max_abs = dict.fromkeys(COMPARED, 0.0)
    for base, proj in pairs:
        same = base.generation == proj.generation and base.rougeL_recall == proj.rougeL_recall
        for metric in COMPARED:
            a, b = getattr(base, metric), getattr(proj, metric)
            max_abs[metric] = max(max_abs[metric], abs(a - b))
            same &= close(a, b)
        agree += same
        if not same:
            print(f"!! {set_name} row {base.row} differs:\n   baseline {base}\n   project  {proj}")
    diffs = ", ".join(f"max |d {m}| {v:.2e}" for m, v in max_abs.items())
    print(f"{set_name:<13} {agree}/{len(pairs)} rows agree; {diffs}")
    return agree == len(pairs)


# ---------------------------------------------------------------------------- models, timing
@contextmanager
def model_directory(name: str) -> Iterator[Path]:
    """``tiny`` (built in a temp dir), ``smollm2`` (packaged) or a path."""
    if name == "tiny":
        from harness_ext.testing.tiny_models import build_tiny_llama, build_tokenizer, tofu_texts

        tokenizer = build_tokenizer(tofu_texts(), vocab_size=1024, chat_template=True)
        with tempfile.TemporaryDirectory(prefix="tiny-llama-") as tmp:
            yield build_tiny_llama(tmp, tokenizer=tokenizer)
    elif name == "smollm2":
        from harness_ext.assets import packaged_smollm2

        yield packaged_smollm2()
    else:
        yield Path(name)


def timed(function, *args) -> tuple[Any, float]:
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


# The project's scoring paths, all through the same task: lm-eval's stock hf backend, the
# project's hf-unlearn backend without prompt-lookup drafts, and hf-unlearn as it comes.
PROJECT_PATHS = {
    "hf": ("hf", {}),
    "hf-unlearn-no-lookup": ("hf-unlearn", {"prompt_lookup_tokens": 0}),
    "hf-unlearn": ("hf-unlearn", {}),
}


def benchmark(
    name: str, rows: int, batch_size: int, paths: Sequence[str], repeats: int = 1
) -> tuple[dict, bool]:
    """Warm up every path, time them, check agreement; the table row and whether all agree."""
    seconds: dict[str, list[float]] = {"baseline": [], **{path: [] for path in paths}}
    outputs: dict[str, Any] = {}
    with model_directory(name) as model_dir:
        run_baseline(model_dir, 1, batch_size)  # warm-up: imports, first kernels, file cache
        for path in paths:
            run_project(model_dir, 1, batch_size, *PROJECT_PATHS[path])
        for _ in range(repeats):
            outputs["baseline"], took = timed(run_baseline, model_dir, rows, batch_size)
            seconds["baseline"].append(took)
            for path in paths:
                outputs[path], took = timed(
                    run_project, model_dir, rows, batch_size, *PROJECT_PATHS[path]
                )
                seconds[path].append(took)
    agree = True
    for path in paths:
        print(
            f"\n{name}: agreement of the baseline and the project's {path} path ({rows} rows/set)"
        )
        agree &= check_agreement(outputs["baseline"], *outputs[path])
    row = {"model": name, "rows": rows, "batch": batch_size}
    return {**row, **{path: min(times) for path, times in seconds.items()}}, agree


def print_table(rows: list[dict[str, Any]], paths: Sequence[str]) -> None:
    header = "| model | rows per set | batch size | baseline s |"
    header += "".join(f" {path} s | speed-up |" for path in paths)
    print("\n" + header)
    print("|---|---:|---:|---:|" + "---:|---:|" * len(paths))
    for r in rows:
        cells = "".join(f" {r[path]:.2f} | {r['baseline'] / r[path]:.2f}x |" for path in paths)
        print(f"| {r['model']} | {r['rows']} | {r['batch']} | {r['baseline']:.2f} |{cells}")
    print("speed-up = baseline seconds / path seconds, measured in the same run")


# ---------------------------------------------------------------------------- the demo's scoring
# (label, backend, task options added to the demo's): every metric, fewer metrics, the project's
DEMO_PATHS = {  # --demo-paths name: (label, backend, task options)
    "hf": ("hf", "hf", {}),
    "hf-no-token-scores": ("hf, token_scores off", "hf", {"token_scores": "off"}),
    "hf-unlearn": ("hf-unlearn", "hf-unlearn", {}),
}
PER_ROW_TOLERANCE = 1e-6


def demo_target(given: str | None) -> Path:
    """The demo's fine-tuned target: the path given, else the newest one ``make demo`` made."""
    if given:
        return Path(given)
    from harness_ext.assets import cache_dir

    found = sorted((cache_dir() / "demo").glob("target-*"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit("no demo target under $LM_UNLEARN_CACHE/demo: run `make demo` first")
    return found[-1]


def demo_metadata(rows: int | None = None) -> dict[str, Any]:
    """The demo's task options; ``rows``: that many rows of every set and of the holdout (the
    first ones), for a shorter check."""
    from harness_ext.workflows.demo import HOLDOUT_ROWS, DemoSettings, demo_task_options

    settings = DemoSettings()
    options = {**demo_task_options(settings), "prompt_format": settings.prompt_format}
    if rows:
        options["max_rows_per_set"] = dict.fromkeys(
            ("forget", "retain", "real_authors", "world_facts"), rows
        )
        options["holdout"] = f"retain_perturbed[{HOLDOUT_ROWS.start}:{HOLDOUT_ROWS.start + rows}]"
    return options


def run_demo_path(
    model_dir: Path,
    backend: str,
    options: dict[str, Any],
    batch_size: int,
    dtype: str,
    rows: int | None = None,
):
    """One scoring of the demo's rows; (per-row samples by (set, row), metrics, profile)."""
    from phase_profile import profiled

    from harness_ext.lm_eval_plugin.results import task_metrics
    from harness_ext.lm_eval_plugin.run import run_tasks

    with profiled() as profile:
        results = run_tasks(
            {"pretrained": str(model_dir), "dtype": dtype},
            [TASK],
            backend=backend,
            metadata={**demo_metadata(rows), **options},
            apply_chat_template=False,
            batch_size=batch_size,
            device="cpu",
            log_samples=True,
        )
    samples = {(s["doc"]["set"], s["doc"]["row"]): s for s in results["samples"][TASK]}
    return samples, task_metrics(results, TASK), profile


def _numbers(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path, leaf) of every number or string inside a per-row value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
        yield prefix, value


def compare_rows(first: dict, second: dict, metrics: list[str]) -> tuple[int, dict[str, float]]:
    """(rows whose generations differ, largest |difference| per metric over rows where both
    give a number); strings other than N/A reasons (generations) must be equal."""
    differing, largest = 0, {}
    for key in sorted(set(first) & set(second)):
        a, b = first[key], second[key]
        generations = [(row.get("model_utility") or {}).get("generation") for row in (a, b)]
        if generations[0] != generations[1]:  # holdout rows generate nothing: None on both
            differing += 1
        for metric in metrics:
            left, right = dict(_numbers(a.get(metric))), dict(_numbers(b.get(metric)))
            for path, x in left.items():
                y = right.get(path)
                if isinstance(x, (int, float)) and isinstance(y, (int, float)):
                    name = f"{metric}.{path}" if path else metric
                    largest[name] = max(largest.get(name, 0.0), abs(float(x) - float(y)))
    return differing, largest


def demo_benchmark(
    target: str | None, batch_size: int, dtype: str, names: list[str], rows: int | None = None
) -> int:
    """Time the demo's scoring through each of ``names`` (of DEMO_PATHS) and hf-unlearn, in
    ``dtype``; 1 when a generation differs, or (float64) a per-row number by more than 1e-6."""
    from phase_profile import matmul_peak, print_profile

    model_dir = demo_target(target)
    print(f"the demo's target: {model_dir} ({dtype})\ntask options: {demo_metadata(rows)}")
    for backend in ("hf", "hf-unlearn"):  # imports, first kernels, the file cache
        run_project(model_dir, 1, batch_size, backend, {"dtype": dtype})
    outcomes = {}
    for name in [*names, "hf-unlearn"]:
        label, backend, options = DEMO_PATHS[name]
        started = time.perf_counter()
        samples, metrics, profile = run_demo_path(
            model_dir, backend, options, batch_size, dtype, rows
        )
        outcomes[label] = (samples, metrics, profile, time.perf_counter() - started)
    peak = matmul_peak(dtype=dtype)
    for label, (_, _, profile, _) in outcomes.items():
        print_profile(label, profile, peak, dtype)
    ours = outcomes["hf-unlearn"]
    # float32 sums taken in other orders (other batch shapes) differ by ~1e-5 on a truth ratio;
    # in float64 the same computation agrees far below 1e-6, so there the tolerance is enforced
    enforce = dtype == "float64"
    agree = True
    for label in [label for label in outcomes if label != "hf-unlearn"]:
        samples = outcomes[label][0]
        metrics = sorted({name for sample in samples.values() for name in sample["metrics"]})
        differing, largest = compare_rows(ours[0], samples, metrics)
        worst = sorted(largest.items(), key=lambda item: -item[1])
        print(f"\nhf-unlearn against {label}: {len(samples)} rows, generations differing: "
              f"{differing}; largest per-row differences:")  # fmt: skip
        for name, value in worst[:8]:
            flag = "" if value <= PER_ROW_TOLERANCE else f"  (> {PER_ROW_TOLERANCE:g})"
            print(f"  {name:<55} {value:.2e}{flag}")
        agree &= differing == 0
        agree &= not (enforce and worst and worst[0][1] > PER_ROW_TOLERANCE)
    print("\n| path | seconds | speed-up of hf-unlearn |")
    print("|---|---:|---:|")
    for label, (_, _, _, seconds) in outcomes.items():
        print(f"| {label} | {seconds:.1f} | {seconds / ours[3]:.2f}x |")
    return 0 if agree else 1


def quiet_libraries() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    for name in ("lm_eval", "lm-eval", "lm-unlearn"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        "--models",
        dest="models",
        default="smollm2",
        help="comma-separated: tiny, smollm2 or a model directory",
    )
    parser.add_argument("--rows-per-set", type=int, default=10)
    parser.add_argument("--batch-size", type=int, help="8; with --demo, the demo's 16")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs; the best is shown")
    parser.add_argument("--no-check", action="store_true", help="exit 0 even on disagreement")
    parser.add_argument(
        "--paths",
        default=",".join(PROJECT_PATHS),
        help=f"comma-separated project paths to time, of: {', '.join(PROJECT_PATHS)}",
    )
    parser.add_argument(
        "--demo",
        nargs="?",
        const="",
        metavar="TARGET",
        help="time the demo's scoring instead (its target, rows and task options; hf, hf with "
        "token_scores off, hf-unlearn), with the profile per phase",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float32",
        help="with --demo: the models' dtype (float64 checks that the paths compute the same "
        "numbers, per row within 1e-6, apart from float32 rounding)",
    )
    parser.add_argument(
        "--rows",
        type=int,
        help="with --demo: score only the first N rows of every set and of the holdout (a "
        "shorter check, e.g. with --dtype float64)",
    )
    parser.add_argument(
        "--demo-paths",
        default="hf,hf-no-token-scores",
        help="with --demo: comma-separated paths timed before hf-unlearn, of: hf, "
        "hf-no-token-scores",
    )
    args = parser.parse_args(argv)
    if args.demo is not None:
        names = [name.strip() for name in args.demo_paths.split(",") if name.strip()]
        unknown = [name for name in names if name not in DEMO_PATHS or name == "hf-unlearn"]
        if unknown:
            parser.error(f"unknown --demo-paths {unknown}; choose from hf, hf-no-token-scores")
        quiet_libraries()
        from harness_ext.workflows.demo import DemoSettings

        batch_size = args.batch_size or DemoSettings.score_batch_size
        return demo_benchmark(args.demo or None, batch_size, args.dtype, names, args.rows)
    args.batch_size = args.batch_size or 8
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = [p for p in paths if p not in PROJECT_PATHS]
    if unknown or not paths:
        parser.error(f"unknown --paths {unknown}; choose from {', '.join(PROJECT_PATHS)}")
    quiet_libraries()
    table, all_agree = [], True
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        row, agree = benchmark(name, args.rows_per_set, args.batch_size, paths, args.repeats)
        table.append(row)
        all_agree &= agree
    print_table(table, paths)
    if not all_agree:
        print(
            "\n!! THE BASELINE AND THE PROJECT DISAGREE (see above); timings compare unequal work"
        )
        return 0 if args.no_check else 1
    print("\nevery path computed the baseline's numbers on every row")
    return 0


if __name__ == "__main__":
    sys.exit(main())
