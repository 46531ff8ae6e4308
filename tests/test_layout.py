"""The layout: folders are layers, a module's folder tells its layer, imports only point down,
and none go round.

Read from the source (every import, also those inside functions), so a lazy import cannot hide
a circle. A benchmark is a plug-in above the machinery every benchmark shares: the shared layers
(metrics, the lm-eval machinery) never import a benchmark; they find the installed ones through
the ``lm_eval.tasks`` entry points (harness_ext/lm_eval_plugin/benchmarks.py).
"""

import ast
import functools
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness_ext", "tofu_tasks", "unlearn_methods")

# Folders from the lowest layer up; a module may import its own layer and the ones below.
LAYERS = [
    ("support", ("harness_ext",)),
    ("metrics: pure math of per-row numbers", ("harness_ext/metrics",)),
    ("lm-eval machinery every benchmark shares", ("harness_ext/lm_eval_plugin",)),
    (
        "benchmark plug-ins: data, eval sets, task YAMLs, task classes",
        ("tofu_tasks", "tofu_tasks/muse", "tofu_tasks/wmdp", "tofu_tasks/lume"),
    ),
    ("loss terms", ("unlearn_methods/losses",)),
    ("training, test models", ("unlearn_methods", "harness_ext/testing")),
    ("workflows", ("harness_ext/workflows",)),
    ("commands", ("harness_ext/commands",)),
]


@functools.cache
def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def layer(module: str) -> int:
    """The layer of the folder the module's file is in."""
    folder = modules()[module].parent.relative_to(ROOT).as_posix()
    for index, (_, folders) in enumerate(LAYERS):
        if folder in folders:
            return index
    raise AssertionError(f"{module} is in {folder}/, a folder of no layer; add it to LAYERS")


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Project modules imported anywhere in a file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, set(known)) - {name} for name, path in known.items()}


def test_every_module_has_a_layer():
    for module in modules():
        layer(module)


def test_imports_point_down_only():
    wrong = [
        f"{module} ({LAYERS[layer(module)][0]}) imports {target} ({LAYERS[layer(target)][0]})"
        for module, targets in graph().items()
        for target in targets
        if layer(target) > layer(module) and not module.startswith(target + ".")
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_circles():
    edges = graph()
    # a package's __init__ importing nothing of its modules is not a circle with them
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if node.startswith(target + "."):  # a module's own package
                continue
            if state.get(target) == 1:
                raise AssertionError(" -> ".join(path[path.index(target) :] + [target]))
            if target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_imports_in_a_fresh_interpreter(package):
    names = sorted(m for m in modules() if m.split(".")[0] == package)
    program = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in names)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Remainder of file ignored" not in done.stderr  # the autoload .pth line works


def test_the_entry_points_name_existing_objects():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    module, _, attribute = project["project"]["scripts"]["lm-unlearn"].partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))
    pth = (ROOT / "harness_ext" / "lm_unlearn_autoload.pth").read_text().split()
    assert pth[0] == "import" and importlib.import_module(pth[1])
    from harness_ext.lm_eval_plugin import BACKEND_CLASS

    module, _, name = BACKEND_CLASS.partition(":")
    assert getattr(importlib.import_module(module), name).__name__ == name
