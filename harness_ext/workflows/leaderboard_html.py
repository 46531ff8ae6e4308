"""The leaderboard as one self-contained HTML page: a sortable table, its glossary and the
plots."""

from __future__ import annotations

import html
import os
from pathlib import Path

from harness_ext.metrics.glossary import definition, label
from harness_ext.workflows.leaderboard_plots import bars_svg, has_scatter, scatter_svg
from harness_ext.workflows.leaderboard_ranking import Table
from harness_ext.workflows.leaderboard_runs import RunRecord, selection_of
from harness_ext.workflows.leaderboard_tables import (
    checkpoint_cell,
    glossary,
    name_cell,
    numbered_columns,
    rank_cell,
    ranking_sentence,
    results_link,
    rows_text,
    selection_sentence,
)
from harness_ext.workflows.table_cells import cell

# ---------------------------------------------------------------------- HTML
SORT_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, column) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var ascending = th.dataset.order !== 'asc'; th.dataset.order = ascending ? 'asc' : 'desc';
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.value || a.cells[column].innerText;
        var y = b.cells[column].dataset.value || b.cells[column].innerText;
        var nx = parseFloat(x), ny = parseFloat(y);
        var cmp = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return ascending ? cmp : -cmp;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f0f0f0; cursor: pointer; position: sticky; top: 0; }
td.name, th.name { text-align: left; white-space: nowrap; }
tr.apart td { color: #888; }
tr.reference td { background: #f7f7ee; font-style: italic; }
.note { color: #555; font-size: 13px; }
.wrap { overflow-x: auto; max-width: 100%; }
"""


def _html_table(records: list[RunRecord], columns: list[str], output: Path) -> str:
    selected = any(selection_of(r) for r in records)
    head = "<th class='name'>checkpoint</th>" * selected
    head += "".join(
        f"<th title='{html.escape(c + ': ' + definition(c), quote=True)}'>"
        f"{html.escape(label(c))}</th>"
        for c in columns
    )
    out = [
        "<div class='wrap'><table class='sortable'><thead><tr>"
        f"<th>#</th><th class='name'>run</th><th>prompt</th>{head}<th class='name'>note</th>"
        "</tr></thead><tbody>"
    ]
    for r in records:
        cells = [f"<td class='name'>{html.escape(checkpoint_cell(r))}</td>"] * selected
        for c in columns:
            number = r.number(c)
            value = "" if number is None else repr(number)
            cells.append(f"<td data-value='{value}'>{html.escape(cell(r.metrics.get(c), c))}</td>")
        link = html.escape(results_link(r, output), quote=True)
        css = " class='apart'" if r.note else (" class='reference'" if r.role else "")
        rank = "" if r.note else rank_cell(r)
        out.append(
            f"<tr{css}><td>{rank}</td><td class='name'><a href='{link}' "
            f"title='{html.escape(r.run_dir.name, quote=True)}'>{html.escape(name_cell(r))}</a></td>"
            f"<td>{html.escape(str(r.prompt_format))}</td>{''.join(cells)}"
            f"<td class='name' title='{html.escape(r.note)}'>"
            f"{html.escape('differs in ' + ', '.join(r.differs) if r.differs else '')}</td></tr>"
        )
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _html_glossary(columns: list[str], missing: dict[str, list[str]], records) -> str:
    items = "".join(
        f"<li><b>{html.escape(name)}</b> (<code>{html.escape(key)}</code>): "
        f"{html.escape(meaning)}; {html.escape(best)}.</li>"
        for name, key, meaning, best in glossary(columns, records)
    )
    items += "".join(
        f"<li>Not shown, N/A in every run: "
        f"{html.escape(', '.join(label(n) for n in names))}: {html.escape(reason)}.</li>"
        for reason, names in missing.items()
    )
    return f"<ul class='note'>{items}</ul>"


def to_html(
    tables: dict[str, Table],
    records: list[RunRecord],
    output: Path,
    title: str,
    unread: list[tuple[Path, str]] | None = None,
    extra: str = "",
) -> str:
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        "<p class='note'>Click a column header to sort; hover it for its definition. Each run "
        "links to its lm-eval results file; hover a name for its run folder. References (in "
        "italics) are the models the others are measured against; they are not ranked.</p>",
    ]
    for task, table in tables.items():
        main, apart = table.main, table.apart
        columns, missing = numbered_columns(main + apart)
        rows = rows_text(main[0].comparability["rows_per_set"])
        parts.append(f"<h2>{html.escape(task)}</h2>")
        parts.append(
            f"<p class='note'>{html.escape(ranking_sentence(table))} {len(apart)} kept apart "
            f"(grey, with the reason). Rows per set: {html.escape(rows)}.</p>"
        )
        if sentence := selection_sentence(main, table.ranking):
            parts.append(f"<p class='note'>{html.escape(sentence)}</p>")
        parts.append(_html_table(main + apart, columns, output))
        parts.append(_html_glossary(columns, missing, main))
        if apart:
            items = "".join(
                f"<li><b>{html.escape(r.label)}</b>: {html.escape(r.note.removeprefix('not comparable: '))}</li>"
                for r in apart
            )
            parts.append(f"<p class='note'>Kept apart:</p><ul class='note'>{items}</ul>")
        if has_scatter(main):
            scatter, note = scatter_svg(main)
            parts.append("<h3>Model utility against forget efficacy</h3>")
            if note:
                parts.append(f"<p class='note'>{html.escape(note)}.</p>")
            parts.append(scatter)
        parts.append("<h3>Per-metric comparison</h3>")
        parts.append(bars_svg(main))
    parts.append(extra)
    if unread:
        items = "".join(
            f"<li><code>{html.escape(os.path.relpath(path, output))}</code>: "
            f"{html.escape(reason)}</li>"
            for path, reason in unread
        )
        parts.append(f"<h2>Not read</h2><ul class='note'>{items}</ul>")
    parts.append("<script>" + SORT_SCRIPT + "</script></body></html>")
    return "\n".join(parts)
