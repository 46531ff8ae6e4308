"""`lm_eval` finds the tasks after `pip install` with no flags, and the hook can be turned off."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

PROBE = (
    "from lm_eval.tasks import TaskManager\n"
    "tm = TaskManager(include_defaults=False)\n"
    "print(sorted(t for t in tm.all_tasks if t.startswith('tofu_')))\n"
)
TASKS = (
    "['tofu_forget01_unlearn', 'tofu_forget05_unlearn', 'tofu_forget10_unlearn', 'tofu_unlearn']"
)


def run_probe(**env):
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    ).stdout.strip()


def test_pth_file_is_installed_at_site_packages_root():
    pth = Path(sysconfig.get_paths()["purelib"]) / "lm_unlearn_autoload.pth"
    assert pth.read_text().strip() == "import harness_ext.lm_eval_plugin.autoload"


def test_task_manager_sees_the_tasks_in_a_fresh_interpreter():
    assert run_probe() == TASKS


def test_opt_out_environment_variable():
    assert run_probe(LM_UNLEARN_NO_AUTOLOAD="1") == "[]"


def test_user_include_paths_still_win(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "task: tofu_forget01_unlearn\ndataset_path: none\noutput_type: generate_until\n"
    )
    probe = (
        "from lm_eval.tasks import TaskManager\n"
        f"tm = TaskManager(include_path={str(tmp_path)!r}, include_defaults=False)\n"
        "print(tm.task_index['tofu_forget01_unlearn'].yaml_path)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(tmp_path / "mine.yaml")


def test_entry_point_is_declared_for_future_lm_eval():
    from importlib.metadata import entry_points

    assert [ep.value for ep in entry_points(group="lm_eval.tasks")] == ["tofu_tasks"]


def test_built_wheel_carries_the_pth_and_the_task_yamls(tmp_path):
    import zipfile

    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(root),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("lm_unlearn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "lm_unlearn_autoload.pth" in names
    assert {"tofu_tasks/_default_template_yaml", "tofu_tasks/tofu_forget01_unlearn.yaml"} <= names


def test_backend_is_registered_lazily_by_the_hook():
    probe = (
        "import sys\n"
        "from lm_eval.api.registry import get_model, model_registry\n"
        "print(get_model('hf').__name__, 'hf-unlearn' in model_registry,\n"
        "      'harness_ext.lm_eval_plugin.backend' in sys.modules)\n"
    )

    def run(**env):
        done = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **env},
        )
        return done.stdout.split()

    # named in the registry, imported only when a run asks for it
    assert run() == ["HFLM", "True", "False"]
    assert run(LM_UNLEARN_NO_AUTOLOAD="1") == ["HFLM", "False", "False"]
