"""How one value is written into a table cell, the same way in every table the project writes
(leaderboard, robustness table, audit, continual): numbers as the glossary formats them, text
escaped for Markdown, and text a spreadsheet would run as a formula quoted for CSV."""

from __future__ import annotations

import html
import json
from typing import Any

from harness_ext.metrics.glossary import format_value

# enough to keep a cell one cell of plain text: no code, emphasis, links, HTML or cell breaks
MARKDOWN_SPECIAL = "\\`*_[]<>|"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any, metric: str = "") -> str:
    """A value as the tables show it: 4 decimals (2 significant digits below 1e-3), privleak as
    a signed percentage, "N/A" for a reason, blank for nothing."""
    return format_value(metric, value)


def md_text(text: Any) -> str:
    """Text shown as itself in a Markdown table cell (no links, emphasis, HTML or cell breaks)."""
    text = html.escape(str(text), quote=False).replace("\n", " ")
    return "".join("\\" + c if c in MARKDOWN_SPECIAL else c for c in text)


def csv_text(value: Any) -> Any:
    """A cell a spreadsheet shows as text: a leading =, +, -, @ would start a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def short_text(value: Any) -> str:
    """A value short enough for a sentence: a sha256 as its first 10 digits, long text cut."""
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value
    if isinstance(value, str) and len(value) == 64:
        return value[:10]  # a sha256
    return text if len(text) <= 80 else text[:77] + "..."
