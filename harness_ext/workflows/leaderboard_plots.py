"""The leaderboard's plots as inline SVG: model utility against forget efficacy, and a bar
panel per metric with the retain model's value marked where it is the best one."""

from __future__ import annotations

import io
import math

from harness_ext.metrics.glossary import label
from harness_ext.workflows import ranking
from harness_ext.workflows.leaderboard_runs import SUMMARY_COLUMNS, RunRecord
from harness_ext.workflows.leaderboard_tables import rank_cell
from harness_ext.workflows.table_cells import cell


# ---------------------------------------------------------------------- plots
def pyplot():
    """matplotlib's pyplot, headless, with stable SVG element ids (same runs, same file)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "lm-unlearn"
    import matplotlib.pyplot as plt

    return plt


def figure_svg(figure) -> str:
    """A figure as an inline <svg> element (closed afterwards)."""
    plt = pyplot()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def scatter_axes(records: list[RunRecord]) -> tuple[str, str, str]:
    """(x metric, y metric, note): MU against FE, or the nearest measured stand-ins, said so."""
    have = lambda m: bool(records) and all(r.number(m) is not None for r in records)  # noqa: E731
    x = "forget_efficacy" if have("forget_efficacy") else "forget_rougeL_recall"
    y = "model_utility" if have("model_utility") else "tofu_model_utility"
    notes = []
    if x != "forget_efficacy":
        notes.append(
            "forget efficacy is N/A for some runs (it needs entailment), so x is 1 − forget ROUGE-L recall"
        )
    if y != "model_utility":
        notes.append(
            "the 18-component model utility is N/A for some runs, so y is TOFU's 9-component one"
        )
    return x, y, "; ".join(notes)


def has_scatter(records: list[RunRecord]) -> bool:
    """Whether some run has both of the scatter's numbers (TOFU's tables; not MUSE's, WMDP's or
    LUME's, which report no model utility)."""
    x, y, _ = scatter_axes(records)
    return any(r.number(x) is not None and r.number(y) is not None for r in records)


def short_labels(records: list[RunRecord]) -> tuple[list[str], str]:
    """Plot labels without the parts every run shares (" · base · split"), and those parts."""
    parts = [r.label.split(" · ") for r in records]
    shared: list[str] = []
    while parts and all(len(p) > 1 for p in parts) and len({p[-1] for p in parts}) == 1:
        shared.insert(0, parts[0][-1])
        parts = [p[:-1] for p in parts]
    labels = [
        " · ".join(p) + (f" ({r.role})" if r.role else "")
        for p, r in zip(parts, records, strict=True)
    ]
    return labels, " · ".join(shared)


MARKERS = "osD^vP*Xph<>"


def _plain(text: str) -> str:
    """Text that matplotlib prints as written (a "$" would start math mode)."""
    return text.replace("$", r"\$")


def scatter_svg(records: list[RunRecord]) -> tuple[str, str]:
    """Utility against forgetting: one numbered marker per run, the names in a legend beside the
    plot, so labels never overlap however close the points are."""
    plt = pyplot()

    x_metric, y_metric, note = scatter_axes(records)
    labels, shared = short_labels(records)
    points = [
        (r, name, r.number(x_metric), r.number(y_metric))
        for r, name in zip(records, labels, strict=True)
    ]
    points = [(r, name, x, y) for r, name, x, y in points if x is not None and y is not None]
    flip = x_metric == "forget_rougeL_recall"
    figure, axis = plt.subplots(figsize=(8.6, 4.6))
    colors = plt.get_cmap("tab10").colors
    axis.set_xlim(-0.02, 1.02)
    axis.set_ylim(-0.02, 1.02)
    placed: list[tuple[float, float]] = []  # tag positions so far, in points on the page
    for index, (record, name, x, y) in enumerate(points):
        x = 1 - x if flip else x
        tag = rank_cell(record) if record.rank is not None else "R"
        axis.scatter(
            x, y, s=70, marker=MARKERS[index % len(MARKERS)], color=colors[index % 10],
            edgecolor="black", linewidth=0.5, label=_plain(f"{tag}: {name}"), zorder=3,
        )  # fmt: skip
        offset = _free_offset(axis, x, y, placed)
        axis.annotate(tag, (x, y), textcoords="offset points", xytext=offset, fontsize=8)
    axis.set_xlabel("1 − forget ROUGE-L recall" if flip else "forget efficacy")
    axis.set_ylabel(
        "model utility (MU-18)" if y_metric == "model_utility" else "TOFU model utility (MU-9)"
    )
    title = "utility against forgetting (up and right is better)"
    axis.set_title(_plain(f"{title}\n{shared}" if shared else title), fontsize=10)
    axis.grid(alpha=0.3)
    if points:
        axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    return figure_svg(figure), note


# Where a point's tag may go, nearest first (points right and up of the point).
TAG_OFFSETS = [(6, 5), (6, -11), (-14, 5), (-14, -11), (6, 17), (-14, 17), (6, -23), (-14, -23),
               (18, 5), (18, -11), (-26, 5), (-26, -11), (18, 17), (-26, 17), (18, -23)]  # fmt: skip


def _free_offset(axis, x: float, y: float, placed: list[tuple[float, float]]) -> tuple[int, int]:
    """The first tag offset that keeps this tag at least a tag's size from the others (points
    that coincide get their tags around them instead of on top of each other)."""
    dpi_scale = 72.0 / axis.figure.dpi
    px, py = (value * dpi_scale for value in axis.transData.transform((x, y)))
    for dx, dy in TAG_OFFSETS:
        spot = (px + dx, py + dy)
        if all(abs(spot[0] - a) >= 10 or abs(spot[1] - b) >= 10 for a, b in placed):
            placed.append(spot)
            return dx, dy
    placed.append((px + 6, py + 5))
    return 6, 5


def bars_svg(records: list[RunRecord]) -> str:
    """One horizontal bar chart per metric, each bar labelled with its value beside its end
    (left of a negative bar, right of a positive one), and, where the best value is the retain
    model's, a dashed line there."""
    plt = pyplot()

    metrics = [m for m in SUMMARY_COLUMNS if any(r.number(m) is not None for r in records)]
    if not metrics:
        return ""
    labels, shared = short_labels(records)
    labels = [_plain(name) for name in labels]
    columns = 2
    rows = math.ceil(len(metrics) / columns)
    height = max(1.8, 0.32 * len(records) + 1.0)
    figure, axes = plt.subplots(rows, columns, figsize=(11, height * rows), squeeze=False)
    for axis, metric in zip(axes.flat, metrics, strict=False):
        _bar_panel(axis, metric, records, labels)
    for axis in list(axes.flat)[len(metrics) :]:
        axis.axis("off")
    if shared:
        figure.suptitle(_plain(shared), fontsize=10)
    figure.tight_layout()
    return figure_svg(figure)


def _bar_panel(axis, metric: str, records: list[RunRecord], labels: list[str]) -> None:
    from harness_ext.metrics.ideals import RETAIN, ideal_of

    values = [r.number(metric) for r in records]
    positions = range(len(records))
    drawn = [v if v is not None else 0.0 for v in values]
    axis.barh(positions, drawn, color="#4c72b0")
    axis.set_yticks(list(positions), labels)
    ideal = ideal_of(metric)
    target = ranking.retain_value(records[0], metric, records) if ideal.kind == RETAIN else None
    if metric == "forget_quality":
        axis.set_xscale("log")
        axis.set_xlim(min([v for v in values if v] or [1e-3]) / 10, 8.0)
    else:  # privleak is a signed percentage; everything else lies in [0, 1]
        low, high = min(0.0, *drawn), max(1.0 if min(drawn) >= 0 else 0.0, *drawn)
        room = 0.3 * (high - low)  # for the value labels beside the bars' ends
        axis.set_xlim(low - (room if low < 0 else 0.0), high + room)
    if target is not None:
        axis.axvline(target, color="#c44e52", linestyle="--", linewidth=1)
    for position, value in zip(positions, values, strict=True):
        text = "N/A" if value is None else cell(value, metric)
        if value is not None and value < 0:
            axis.text(value, position, f"{text} ", va="center", ha="right", fontsize=7)
        else:
            x = axis.get_xlim()[0] if value is None else value
            axis.text(x, position, f" {text}", va="center", ha="left", fontsize=7)
    axis.set_title(_plain(f"{label(metric)} ({ideal.describe(target)})"), fontsize=9)
    axis.tick_params(labelsize=8)
    axis.invert_yaxis()
    axis.grid(axis="x", alpha=0.3)
