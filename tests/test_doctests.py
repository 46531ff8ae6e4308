"""The examples in the modules' docstrings (formulas worked by hand) run as written."""

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WITH_EXAMPLES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for package in ("harness_ext", "tofu_tasks", "unlearn_methods")
    for path in (ROOT / package).rglob("*.py")
    if any(">>> " in line and "+SKIP" not in line for line in path.read_text().splitlines())
)


def test_there_are_examples():
    assert "harness_ext.metrics.tofu" in WITH_EXAMPLES and len(WITH_EXAMPLES) >= 5


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
