"""``lm-unlearn leaderboard``: one comparable table from many scoring runs.

Reads every lm-eval results file under the given folders: runs of ``lm-unlearn score`` (with their
``manifest.json``) and results of plain ``lm_eval --tasks tofu_forget01_unlearn --output_path ...``.
Hidden folders (a scoring run in progress lives in ``.partial-*``) are never read.

Runs are ranked together only when they are comparable: same task and task version, same scored
rows (data hash and rows per set), same metric variants and metric models, same forget-quality
reference. The largest comparable group of each task forms its table; every other run is listed
apart with the reason it cannot be ranked with that table.

Writes ``LEADERBOARD.md``, ``leaderboard.csv`` and a self-contained ``leaderboard.html`` (sortable
table, a scatter of model utility against forget efficacy, per-metric bars).
"""

from __future__ import annotations

import html
from pathlib import Path

from harness_ext.workflows import robustness_table
from harness_ext.workflows.leaderboard_html import to_html
from harness_ext.workflows.leaderboard_plots import figure_svg, pyplot
from harness_ext.workflows.leaderboard_ranking import check_rank_metric, group_and_rank
from harness_ext.workflows.leaderboard_runs import Leaderboard, RunRecord, read_runs
from harness_ext.workflows.leaderboard_tables import (
    results_link,
    to_frame,
    to_markdown,
    unread_markdown,
)


# ---------------------------------------------------------------------- entry point
def build_leaderboard(
    runs: list[Path],
    output: Path,
    title: str = "TOFU unlearning leaderboard",
    rank_by: str | None = None,
    utility_tolerance: float | None = None,
) -> Leaderboard:
    """Read the runs, rank the comparable ones, write the Markdown, CSV and HTML files."""
    from harness_ext.provenance import write_text_atomic

    check_rank_metric(rank_by)  # before reading anything
    if utility_tolerance is not None and utility_tolerance < 0:
        raise ValueError(f"--utility-tolerance must be 0 or more, got {utility_tolerance:g}")
    unread: list[tuple[Path, str]] = []
    records = read_runs([Path(p) for p in runs], unread)
    # attacked runs (lm-unlearn audit) are not ranked: they fill the robustness table
    attacked = [r for r in records if robustness_table.attack_of(r.manifest)]
    tables = group_and_rank(
        [r for r in records if not robustness_table.attack_of(r.manifest)], rank_by,
        utility_tolerance,
    )  # fmt: skip
    output = Path(output)
    ordered = [r for table in tables.values() for r in table.main + table.apart]
    robust_md, robust_html, robust_csv = robustness_section(attacked, output)
    markdown = to_markdown(tables, output, title) + robust_md
    markdown += "\n" + unread_markdown(unread, output) if unread else ""
    # every file is built before any is written: an error leaves the old files as they were
    contents = {
        "LEADERBOARD.md": markdown + "\n",
        "leaderboard.csv": to_frame(ordered, output).to_csv(index=False),
        "leaderboard.html": to_html(tables, ordered, output, title, unread, robust_html),
    }
    if robust_csv is not None:
        contents[ROBUSTNESS_CSV] = robust_csv
    output.mkdir(parents=True, exist_ok=True)
    files = [write_text_atomic(output / name, text) for name, text in contents.items()]
    if robust_csv is None:  # no attacked runs now: an earlier table would be stale
        (output / ROBUSTNESS_CSV).unlink(missing_ok=True)
    board = Leaderboard(ordered, markdown, files)
    board.unread = unread
    return board


# ---------------------------------------------------------------------- robustness
ROBUSTNESS_CSV = "robustness.csv"
ROBUSTNESS_NOTE = (
    "Forget metrics of each unlearned model before and after an attack of `lm-unlearn audit` "
    "(TOFU: relearning on part of the forget set, then scored on the rest; MUSE and WMDP: "
    "relearning on part of the forget corpus, then scored on the forget sets; 8- and 4-bit "
    "weights; TOFU's paraphrased forget questions; WMDP's few-shot prompts), shown as before → "
    "after. recovery = (after − before) / "
    "(target − before), with target the model before unlearning on the same rows: 0 nothing "
    "came back, 1 all of it; N/A where target − before is within its noise (the unlearned "
    "model already scores like the target). Relearning can teach facts a model never knew, "
    "so it is run the same way on the retain model (the control): gain − control's is what "
    "came back beyond what relearning gives a model that never learned the forget rows."
)


def robustness_section(attacked: list[RunRecord], output: Path) -> tuple[str, str, str | None]:
    """(Markdown, HTML, CSV text or None) of the robustness table of the attacked runs."""
    rows = robustness_table.rows_from_runs(attacked)
    if not rows:
        return "", "", None
    link = lambda row: results_link(row["record"], output)  # noqa: E731
    text = f"\n## Robustness (lm-unlearn audit)\n\n{ROBUSTNESS_NOTE}\n\n"
    text += robustness_table.summary_markdown(rows, link)
    text += f"\n\nEvery forget metric, before, after and target: `{ROBUSTNESS_CSV}`.\n"
    figure = robustness_table.figure(rows, pyplot())
    page = (
        f"<h2>Robustness (lm-unlearn audit)</h2><p class='note'>{html.escape(ROBUSTNESS_NOTE)}</p>"
        + robustness_table.summary_html(rows, link)
        + (figure_svg(figure) if figure is not None else "")
    )
    table = [{**row, "run": row["record"].label, "results_file": link(row)} for row in rows]
    return text, page, robustness_table.csv(table)
