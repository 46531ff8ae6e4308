"""The product as a user installs it: the wheel, no extras, run from a folder outside the checkout.

`make test` installs the project editable with its `dev` extra, so a module that the code imports
but the package does not declare would go unnoticed there. Here the built wheel is installed into
a fresh virtual environment that holds only the wheel's declared runtime dependencies (resolved
from its metadata, markers and extras included, and linked in from the test environment, so no
network is needed), and the README's commands run from a temporary folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _runtime_closure(requirements: list[str]) -> set[str]:
    """Installed distributions that these requirements pull in, recursively (no dev tools)."""
    installed = {canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions()}
    needed: set[tuple[str, str]] = set()
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate(
            {**default_environment(), "extra": extra}
        ):
            continue
        name = canonicalize_name(requirement.name)
        if name not in installed:
            raise AssertionError(f"{name} is required but not installed in the test environment")
        for wanted in ("", *requirement.extras):
            if (name, wanted) in needed:
                continue
            needed.add((name, wanted))
            todo += [(Requirement(r), wanted) for r in installed[name].requires or []]
    return {name for name, _ in needed}


def _top_level_entries(dist: metadata.Distribution) -> set[str]:
    entries = set()
    for file in dist.files or []:
        first = file.parts[0]
        if first != ".." and not first.endswith(".pth") and first != "__pycache__":
            entries.add(first)
    return entries


def _write_console_scripts(dist: metadata.Distribution, python: Path, bin_dir: Path) -> None:
    for entry in dist.entry_points.select(group="console_scripts"):
        module, _, attribute = entry.value.partition(":")
        script = bin_dir / entry.name
        script.write_text(
            f"#!{python}\nimport sys\nfrom {module} import {attribute.split('.')[0]}\n"
            f"sys.exit({attribute}())\n"
        )
        script.chmod(0o755)


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> dict[str, str]:
    """A fresh venv with the built wheel and only its runtime dependencies; returns its env."""
    base = tmp_path_factory.mktemp("installed")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(base / "dist"), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = (base / "dist").glob("lm_unlearn-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        wheel_metadata = Parser().parsestr(archive.read(name).decode())
    requirements = wheel_metadata.get_all("Requires-Dist") or []

    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True, symlinks=True)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    assert site != Path(sysconfig.get_paths()["purelib"])
    for name in sorted(_runtime_closure(requirements)):
        dist = metadata.distribution(name)
        for entry in _top_level_entries(dist):
            source = Path(dist.locate_file(entry))
            if source.exists() and not (site / entry).exists():
                (site / entry).symlink_to(source)
        _write_console_scripts(dist, python, env_dir / "bin")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}"
    env["HF_HOME"] = str(base / "hf-home")  # nothing from the machine's hub cache
    env["HOME"] = str(base / "home")
    return env


def run(env: dict[str, str], cwd: Path, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_package_comes_from_the_wheel_not_the_checkout(installed, tmp_path):
    out = run(
        installed, tmp_path, "python", "-c", "import harness_ext; print(harness_ext.__file__)"
    )
    assert out.returncode == 0, out.stderr
    assert "site-packages" in out.stdout and str(ROOT) not in out.stdout


def test_readme_lm_eval_command(installed, tmp_path, tiny_model_dir):
    out = run(
        installed, tmp_path, "lm_eval", "--model", "hf",
        "--model_args", f"pretrained={tiny_model_dir}",
        "--tasks", "tofu_forget01_unlearn", "--device", "cpu", "--batch_size", "8",
        "--metadata", json.dumps({"max_rows_per_set": 2}),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "forget_rougeL_recall" in out.stdout and "tofu_model_utility" in out.stdout


def test_lm_unlearn_score(installed, tmp_path, tiny_model_dir):
    out = run(
        installed, tmp_path, "lm-unlearn", "score", str(tiny_model_dir),
        "--max-rows-per-set", "2", "--batch-size", "8", "--device", "cpu", "--output", "runs",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    (manifest,) = (tmp_path / "runs").glob("*/manifest.json")
    # Offline and without the extra there is no embedding model: the value says how to get one.
    results = next(manifest.parent.glob("*/results_*.json")).read_text()
    assert "lm-unlearn[offline]" in results


def test_lm_unlearn_aggregate_legacy_logs(installed, tmp_path, legacy_logs):
    out = run(
        installed, tmp_path, "lm-unlearn", "aggregate",
        "--legacy-logs", str(legacy_logs / "llama2-7b_full_wd0.01"),
        "--reference-logs", str(legacy_logs / "llama2-7b_retain90_wd0.01"), "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    values = json.loads(out.stdout)
    assert values["tofu_model_utility"] == pytest.approx(0.6227, abs=5e-4)
    assert values["forget_cosine_similarity"].startswith("N/A")


def test_lm_unlearn_doctor(installed, tmp_path):
    out = run(installed, tmp_path, "lm-unlearn", "doctor")
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert out.returncode in (0, 1)  # 1: the hub-only metric models are missing offline
    assert "ok  lm_eval autoload" in out.stdout and "ok  TOFU data" in out.stdout
