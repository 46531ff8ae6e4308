"""The layout: a module's folder tells its layer, imports only point down, and none go round.

Read from the source (every import, also those inside functions), so a lazy import cannot hide
a circle.
"""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness_ext", "tofu_tasks", "unlearn_methods")

# Lower numbers are lower layers; a module may import its own layer and the ones below.
LAYERS = [
    ("support and definitions", ("harness_ext", "harness_ext.provenance", "harness_ext.assets",
     "harness_ext.row_slices",
     "harness_ext.model_files", "tofu_tasks", "tofu_tasks.eval_sets", "tofu_tasks.data",
     "tofu_tasks.prompts", "tofu_tasks.options", "tofu_tasks.scored_tokens",
     "tofu_tasks.realworld")),
    ("metrics", ("harness_ext.metrics",)),
    ("lm-eval integration", ("harness_ext.lm_eval_plugin", "tofu_tasks.task",
     "tofu_tasks.realworld_task")),
    ("workflows and training", ("harness_ext.workflows", "harness_ext.testing", "unlearn_methods")),
    ("commands", ("harness_ext.commands",)),
]  # fmt: skip


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def layer(module: str) -> int:
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module == prefix or (
                module.startswith(prefix + ".") and prefix != "harness_ext"
            )
            if inside and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    if best is None:
        raise AssertionError(f"{module} is in no layer; add it to LAYERS")
    return best[0]


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
