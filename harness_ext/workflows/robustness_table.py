"""The robustness table: forget metrics before and after each attack of ``lm-unlearn audit``.

One row per (model, attack, forget metric): the unlearned model's score before the attack, after
it, the gain, the score of the model before unlearning (the target, when known) and the
recovery (after − before) / (target − before) (N/A where the gap is within its noise), and, for
an attack run on a control too (relearning, on the retain model), the control's scores, its
gain and the difference of the two gains. ``lm-unlearn audit`` writes it for one model
(``audit.md``, ``audit.csv``, ``audit.json``); ``lm-unlearn leaderboard`` builds it for every
attacked run it finds (``robustness.csv`` and a section of ``LEADERBOARD.md`` and the HTML page).

An attacked run is a normal scoring run whose manifest carries an ``attack`` section: its name
and variant, its settings, the input model and its fingerprint, and the scores of the unlearned
model (``before``) and of the target on the same rows, the noise of each gap, and the control's
scores before and after the same attack.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from typing import Any

from harness_ext.metrics.glossary import label
from harness_ext.metrics.recovery import LEADING_FORGET_METRICS, comparison, number
from harness_ext.workflows.table_cells import cell, csv_text, md_text
from tofu_tasks.scored_benchmarks import scored_split

COLUMNS = ("model", "attack", "metric", "before", "after", "gain", "target", "recovery",
           "gap_noise", "control_before", "control_after", "control_gain", "difference")  # fmt: skip
PLOTTED = LEADING_FORGET_METRICS


def attack_of(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``attack`` section of a run's manifest (None for an ordinary scoring run)."""
    attack = (manifest or {}).get("attack")
    return attack if isinstance(attack, dict) else None


def table_rows(
    model: str,
    attack: str,
    before: dict[str, Any],
    after: dict[str, Any],
    target: dict[str, Any] | None,
    noise: dict[str, float] | None = None,
    control: tuple[dict[str, Any], dict[str, Any]] | None = None,
    **extra: Any,
) -> list[dict[str, Any]]:
    """The rows of one attacked model: one per forget metric."""
    return [
        {"model": model, "attack": attack, **row, **extra}
        for row in comparison(before, after, target, noise, control)
    ]


def control_of(attack: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(the control's metrics before, after) from an attacked run's attack section."""
    control = attack.get("control") or {}
    before = (control.get("before") or {}).get("metrics")
    after = (control.get("after") or {}).get("metrics")
    return (before, after) if before is not None and after is not None else None


def rows_from_runs(records: Iterable[Any]) -> list[dict[str, Any]]:
    """Robustness rows of every attacked run among leaderboard records (``.manifest``,
    ``.metrics``, ``.label``, ``.task``, ``.run_dir``); each row keeps its record under
    ``"record"``."""
    rows = []
    for record in records:
        attack = attack_of(record.manifest)
        if not attack or attack.get("role") != "after":
            continue
        split = scored_split(record.task)
        model = str((attack.get("input_model") or {}).get("label") or record.label)
        model = model if model.endswith(f" · {split}") else f"{model} · {split}"
        before = (attack.get("before") or {}).get("metrics") or {}
        target = (attack.get("target") or {}).get("metrics")
        variant = str(attack.get("variant") or attack.get("name"))
        shown = str(attack.get("title") or variant)
        rows += table_rows(model, shown, before, record.metrics, target,
                           attack.get("gap_noise"), control_of(attack), variant=variant,
                           after_run=record.run_dir.name, record=record)  # fmt: skip
    return sorted(rows, key=lambda r: (r["model"], r["attack"]))


def _attacked_run(row: dict[str, Any]) -> tuple[str, str, str]:
    """(model, attack, attacked run): one line of the short table and the plot per run."""
    return row["model"], row["attack"], str(row.get("after_run") or "")


# ---------------------------------------------------------------------- formatting
def measured(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows with a number before or after the attack, names of the metrics without any)."""
    kept = [
        r for r in rows if number(r.get("before")) is not None or number(r.get("after")) is not None
    ]
    names = {r["metric"] for r in kept}
    return kept, list(dict.fromkeys(r["metric"] for r in rows if r["metric"] not in names))


def markdown(rows: list[dict[str, Any]]) -> str:
    """The long table as Markdown (one row per attack and metric), metrics that are N/A in
    every run named below it."""
    kept, missing = measured(rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---" * len(COLUMNS) + "|"]
    for row in kept:
        lines.append("| " + " | ".join(md_text(cell(row.get(c))) for c in COLUMNS) + " |")
    if missing:
        lines += ["", "N/A in every run (left out): " + ", ".join(md_text(m) for m in missing)]
    return "\n".join(lines)


def summary(rows: list[dict[str, Any]]) -> tuple[list[str], list[tuple[dict, list[str]]]]:
    """The short table of a leaderboard: one row per attacked model; per leading forget metric
    its scores "before → after", the recovery and, where the attack ran on a control too, the
    gain beyond the control's ("gain − control gain", the control's gain in brackets). Returns
    (header, [(first row, cells)])."""
    metrics = [m for m in PLOTTED if any(r["metric"] == m for r in rows)]
    controlled = any(r.get("control_gain") is not None for r in rows)
    header = ["model", "attack"]
    for metric in metrics:
        name = label(metric)
        header += [f"{name}: before → after", f"{name}: recovery"]
        header += [f"{name}: gain − control's (control's gain)"] * controlled
    groups: dict[tuple[str, str, str], dict[str, dict]] = {}
    for row in rows:
        groups.setdefault(_attacked_run(row), {})[row["metric"]] = row
    out = []
    for (model, attack, _), by_metric in groups.items():
        cells = [model, attack]
        for metric in metrics:
            row = by_metric.get(metric, {})
            cells += [
                f"{cell(row.get('before'))} → {cell(row.get('after'))}",
                cell(row.get("recovery")),
            ]
            if controlled:
                difference = row.get("difference")
                cells.append(
                    ""
                    if difference is None
                    else f"{signed(difference)} ({signed(row.get('control_gain'))})"
                )
        out.append((next(iter(by_metric.values())), cells))
    return header, out


def signed(value: Any) -> str:
    number_ = number(value)
    return "" if number_ is None else f"{number_:+.4f}"


def summary_markdown(rows: list[dict[str, Any]], link: Callable[[dict], str]) -> str:
    header, lines = summary(rows)
    text = ["| " + " | ".join(md_text(h) for h in header) + " |", "|---" * len(header) + "|"]
    for first, cells in lines:
        shown = [md_text(c) for c in cells]
        shown[0] = f"[{shown[0]}]({link(first)})"
        text.append("| " + " | ".join(shown) + " |")
    return "\n".join(text)


def summary_html(rows: list[dict[str, Any]], link: Callable[[dict], str]) -> str:
    header, lines = summary(rows)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for first, cells in lines:
        shown = [html.escape(c) for c in cells]
        shown[0] = f"<a href='{html.escape(link(first), quote=True)}'>{shown[0]}</a>"
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in shown) + "</tr>")
    return (
        "<div class='wrap'><table class='sortable'><thead><tr>"
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def csv(rows: list[dict[str, Any]]) -> str:
    """The table as CSV: its columns plus any extra plain values (run folders, links)."""
    import pandas as pd

    out = []
    for row in rows:
        plain = {k: v for k, v in row.items() if k not in COLUMNS and isinstance(v, (str, int))}
        out.append({**{c: row.get(c) for c in COLUMNS}, **plain})
    frame = pd.DataFrame(out, columns=list(COLUMNS) if not out else None)
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(csv_text)
    return frame.to_csv(index=False)


# ---------------------------------------------------------------------- plot
def figure(rows: list[dict[str, Any]], plt):
    """Before, after and target of the leading forget metrics, one panel each, one group of bars
    per attacked model; None when there is nothing to draw."""
    metrics = [m for m in PLOTTED if any(r["metric"] == m for r in rows)]
    if not metrics:
        return None
    pairs = sorted({_attacked_run(r) for r in rows})
    height = max(2.0, 0.55 * len(pairs) + 1.2)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics) + 2.5, height))
    axes = axes if len(metrics) > 1 else [axes]
    for axis, metric in zip(axes, metrics, strict=True):
        by_pair = {_attacked_run(r): r for r in rows if r["metric"] == metric}
        _panel(axis, [by_pair.get(p) for p in pairs], metric)
    axes[0].set_yticks(range(len(pairs)), [f"{m} · {a}".replace("$", r"\$") for m, a, _ in pairs])
    for axis in axes[1:]:
        axis.set_yticks(range(len(pairs)), [""] * len(pairs))
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.suptitle("forget metrics before and after each attack", fontsize=10)
    fig.tight_layout()
    return fig


def _panel(axis, rows: list[dict[str, Any] | None], metric: str) -> None:
    positions = list(range(len(rows)))
    before = [number((r or {}).get("before")) or 0.0 for r in rows]
    after = [number((r or {}).get("after")) or 0.0 for r in rows]
    axis.barh([p - 0.18 for p in positions], before, height=0.34, color="#9aa5b1", label="before")
    axis.barh([p + 0.18 for p in positions], after, height=0.34, color="#c44e52", label="after")
    targets = [(p, number((r or {}).get("target"))) for p, r in zip(positions, rows, strict=True)]
    shown = [(p, t) for p, t in targets if t is not None]
    if shown:
        axis.scatter([t for _, t in shown], [p for p, _ in shown], marker="|", s=300,
                     color="black", label="target (before unlearning)", zorder=3)  # fmt: skip
    for p, value in zip(positions, after, strict=True):
        axis.text(value, p + 0.18, f" {cell(value)}", va="center", fontsize=7)
    axis.set_xlim(0, max(1.0, *before, *after) * 1.15)
    axis.set_title(metric, fontsize=9)
    axis.invert_yaxis()
    axis.grid(axis="x", alpha=0.3)
    axis.tick_params(labelsize=8)
