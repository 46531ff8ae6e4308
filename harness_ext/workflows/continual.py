"""``lm-unlearn continual``: a sequence of forget requests served one after another.

The forget10 authors (the last 400 rows of TOFU) arrive in requests of 2 authors (40 rows):
request 1 is forget01 (the last 2 authors), request 2 the 2 before, and so on. Request k starts
from the checkpoint of request k−1, which is also its reference model; its retain data is the base
retain set plus the forget rows of the requests not yet served. After each request the model is
scored on Retain, Real Authors, World Facts and that request's forget rows (``forget_rows``
option of ``tofu_forget10_unlearn``), and optionally on every forget row served so far: does
forgotten knowledge come back?

Everything lands under the output folder::

    request-01/ ... request-10/    checkpoints with their run cards
    runs/                          lm-unlearn score runs (a leaderboard reads them)
    continual.csv, continual.md    one row per request
    continual.html                 model utility and forget efficacy against requests served

A run stopped after request k continues at k+1 when started again with the same command (and a
request interrupted mid-way resumes from its last checkpoint).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness_ext.workflows.table_cells import cell
from tofu_tasks.eval_sets import ROWS_PER_AUTHOR

FORGET10_ROWS = 400
AUTHORS_PER_REQUEST = 2
REQUEST_ROWS = ROWS_PER_AUTHOR * AUTHORS_PER_REQUEST
MAX_REQUESTS = FORGET10_ROWS // REQUEST_ROWS


# Set by each request: a continual run refuses them.
PER_REQUEST_FIELDS = ("forget", "retain", "scenario", "overwrite")


@dataclass
class ContinualSettings:
    """``lm-unlearn continual``'s own options; the unlearning options are train's
    (:class:`~unlearn_methods.config.UnlearnConfig`, whose ``output_dir`` holds the whole run)."""

    help_group = "continual run"

    requests: int = field(
        default=MAX_REQUESTS, metadata={"help": f"requests to serve (1-{MAX_REQUESTS})"}
    )
    base_retain: str = field(
        default="retain90", metadata={"help": "retain rows besides the unserved forget rows"}
    )
    score_served: bool = field(
        default=False, metadata={"help": "also score every forget row served so far"}
    )
    metadata: dict[str, Any] | str | None = field(
        default=None, metadata={"help": "task options of the scoring, as JSON"}
    )
    max_rows_per_set: int | None = field(
        default=None, metadata={"help": "score at most N rows of each set"}
    )
    score_batch_size: str = field(default="auto", metadata={"help": "batch size of the scoring"})
    device: str | None = field(
        default=None, metadata={"help": "device of the scoring (default: cuda if available)"}
    )

    def task_options(self) -> dict[str, Any]:
        from tofu_tasks.options import given_task_options

        return given_task_options(self.metadata, self.max_rows_per_set)


def check_per_request_fields(given: set[str]) -> None:
    refused = sorted(given & set(PER_REQUEST_FIELDS))
    if refused:
        shown = ", ".join("--" + name.replace("_", "-") for name in refused)
        raise ValueError(f"{shown}: each request of a continual run sets its own")


def request_rows(k: int) -> tuple[int, int]:
    """Rows of forget10 served by request k (1-based): request 1 = the last 40 = forget01."""
    if not 1 <= k <= MAX_REQUESTS:
        raise ValueError(f"request {k} is outside 1..{MAX_REQUESTS}")
    stop = FORGET10_ROWS - REQUEST_ROWS * (k - 1)
    return stop - REQUEST_ROWS, stop


def forget_spec(k: int) -> str:
    start, stop = request_rows(k)
    return f"forget10[{start}:{stop}]"


def retain_spec(k: int, base_retain: str) -> str:
    """The base retain set plus the forget rows of the requests not yet served."""
    start, _ = request_rows(k)
    return f"{base_retain},forget10[0:{start}]" if start else base_retain


def request_dir(output: Path, k: int) -> Path:
    return Path(output) / f"request-{k:02d}"


def train_request(settings: ContinualSettings, config: Any, k: int) -> Path:
    """Unlearn request k from request k-1's checkpoint (``config`` is train's UnlearnConfig)."""
    import dataclasses

    from unlearn_methods.output_folder import RUN_CARD
    from unlearn_methods.train import train

    output = Path(config.output_dir)
    folder = request_dir(output, k)
    if (folder / RUN_CARD).is_file():
        print(f"request {k}: already served ({folder})")
        return folder
    start_from = config.model if k == 1 else str(request_dir(output, k - 1))
    request = dataclasses.replace(
        config,
        model=start_from,
        output_dir=str(folder),
        forget=forget_spec(k),
        retain=retain_spec(k, settings.base_retain),
        scenario="continual",
    )
    print(f"request {k}: unlearn {request.forget} from {start_from} (retain {request.retain})")
    return train(request)


def score_request(
    settings: ContinualSettings,
    config: Any,
    task_options: dict[str, Any],
    k: int,
    model: Path,
    served: bool = False,
) -> dict:
    from harness_ext.lm_eval_plugin.results import latest_results, task_metrics
    from harness_ext.workflows.score import score_model
    from harness_ext.workflows.score_inputs import ScoreSettings

    start, stop = request_rows(k)
    rows = f"{start}:{FORGET10_ROWS}" if served else f"{start}:{stop}"  # served: requests 1..k
    scoring = ScoreSettings(
        split="forget10",
        prompt_format=config.prompt_format,
        metadata={**task_options, "forget_rows": rows},
        batch_size=settings.score_batch_size,
        device=settings.device,
        output=Path(config.output_dir) / "runs",
    )
    outcome = score_model(str(model), scoring)
    return task_metrics(latest_results(outcome.run_dir), scoring.task)


SUMMARY = ("model_utility", "tofu_model_utility", "forget_efficacy", "forget_rougeL_recall",
           "forget_prob", "forget_truth_ratio", "retain_rougeL_recall",
           "real_authors_rougeL_recall", "world_facts_rougeL_recall")  # fmt: skip


def run_continual(settings: ContinualSettings, config: Any) -> list[dict[str, Any]]:
    """Serve requests 1..N (skipping those already served) with train's options ``config``
    (an UnlearnConfig); returns one summary row each."""
    if not 1 <= settings.requests <= MAX_REQUESTS:
        raise ValueError(
            f"--requests must be between 1 and {MAX_REQUESTS}, got {settings.requests}"
        )
    from unlearn_methods.methods import resolve_method

    resolve_method(config.method)  # an unknown name or a mistyped option fails before any work
    task_options = settings.task_options()
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    table = []
    for k in range(1, settings.requests + 1):
        model = train_request(settings, config, k)
        metrics = score_request(settings, config, task_options, k, model)
        start, stop = request_rows(k)
        row = {"request": k, "forget_rows": f"{start}:{stop}",
               "retain_rows": _count_rows(retain_spec(k, settings.base_retain), config)}  # fmt: skip
        row.update({m: metrics.get(m) for m in SUMMARY})
        if settings.score_served and k > 1:
            served = score_request(settings, config, task_options, k, model, served=True)
            row["served_forget_rougeL_recall"] = served.get("forget_rougeL_recall")
        table.append(row)
        write_outputs(output, table)
    return table


def _count_rows(spec: str, config: Any) -> int:
    from unlearn_methods.data import read_rows

    return len(read_rows(spec, config.data_dir))


def write_outputs(output: Path, table: list[dict[str, Any]]) -> None:
    import pandas as pd

    from harness_ext.provenance import write_text_atomic

    frame = pd.DataFrame(table)
    write_text_atomic(Path(output) / "continual.csv", frame.to_csv(index=False))
    write_text_atomic(Path(output) / "continual.md", to_markdown(frame) + "\n")
    write_text_atomic(Path(output) / "continual.html", to_html(frame))


def frame_cell(value: Any) -> str:
    """A table cell of the continual frame: pandas marks a value a request lacks as NaN."""
    return "" if isinstance(value, float) and math.isnan(value) else cell(value)


def to_markdown(frame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    lines = [header, "|---" * len(frame.columns) + "|"]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(frame_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _numeric(frame, column: str) -> list[float] | None:
    values = [v for v in frame.get(column, []) if isinstance(v, (int, float))]
    return values if len(values) == len(frame) else None


def plot_svg(frame) -> str:
    from harness_ext.workflows.leaderboard_plots import figure_svg, pyplot

    plt = pyplot()

    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    requests = list(frame["request"])
    utility = "model_utility" if _numeric(frame, "model_utility") else "tofu_model_utility"
    if _numeric(frame, utility):
        axis.plot(requests, _numeric(frame, utility), marker="o", label=utility)
    if _numeric(frame, "forget_efficacy"):
        axis.plot(requests, _numeric(frame, "forget_efficacy"), marker="s", label="forget_efficacy")
    elif _numeric(frame, "forget_rougeL_recall"):
        values = [1 - v for v in _numeric(frame, "forget_rougeL_recall")]
        axis.plot(requests, values, marker="s", label="1 − forget ROUGE-L (forget efficacy N/A)")
    axis.set_xlabel("requests served")
    axis.set_ylim(0, 1.02)
    axis.set_xticks(requests)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return figure_svg(figure)


def to_html(frame) -> str:
    rows = "".join(
        "<tr>" + "".join(f"<td>{frame_cell(v)}</td>" for v in row) + "</tr>"
        for _, row in frame.iterrows()
    )
    head = "".join(f"<th>{c}</th>" for c in frame.columns)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>continual unlearning</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:3px 6px}"
        "table{border-collapse:collapse;font-size:13px}</style></head><body>"
        f"<h1>Continual unlearning</h1>{plot_svg(frame)}<table><tr>{head}</tr>{rows}</table>"
        "</body></html>"
    )
