"""`lm-unlearn score` and `lm-unlearn leaderboard` on tiny models: runs, manifests, skipping,
comparability, atomic writes and the HTML page."""

import csv
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness_ext.commands.cli import main
from harness_ext.workflows.leaderboard import build_leaderboard
from harness_ext.workflows.leaderboard_runs import read_runs
from harness_ext.workflows.score_inputs import MANIFEST, ScoreError, resolve_model
from harness_ext.workflows.score_runs import completed_runs

TASK = "tofu_forget01_unlearn"
FAST = ["--max-rows-per-set", "2", "--batch-size", "4", "--device", "cpu",
        "--metadata", json.dumps({"embedding_model": "none", "nli_model": "none"})]  # fmt: skip


def score(*args: str) -> int:
    return main(["score", *args, *FAST])


def without_chat_template(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    config_file = target / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config.pop("chat_template", None)
    config_file.write_text(json.dumps(config))
    (target / "chat_template.jinja").unlink(missing_ok=True)
    return target


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir, tiny_lora_dir):
    """Four runs: full model (chat template), LoRA adapter, model without a template, other rows."""
    root = tmp_path_factory.mktemp("scored")
    out = root / "runs"
    plain_model = without_chat_template(tiny_model_dir, root / "no-template")
    assert score(str(tiny_model_dir), "--output", str(out)) == 0
    assert score(str(tiny_lora_dir), "--output", str(out)) == 0
    assert score(str(plain_model), "--output", str(out)) == 0
    other_rows = FAST[:1] + ["3"] + FAST[2:]
    assert main(["score", str(tiny_model_dir), "--output", str(out), *other_rows]) == 0
    return out, {p.name: json.loads((p / MANIFEST).read_text()) for p in completed_runs(out)}


def located(out: Path, path: str) -> Path:
    """A path written in a run's files: relative to the results folder holding the runs."""
    assert not Path(path).is_absolute(), path
    return (out / path).resolve()


def manifest_of(manifests: dict, given: Path, out: Path, rows: int = 2) -> dict:
    (found,) = [
        m for m in manifests.values()
        if located(out, m["model"]["given"]) == given.resolve()
        and m["data"]["rows_per_set"]["forget"] == rows
    ]  # fmt: skip
    return found


def test_each_run_has_lm_evals_files_and_a_complete_manifest(runs, tiny_model_dir):
    out, manifests = runs
    assert len(manifests) == 4
    manifest = manifest_of(manifests, tiny_model_dir, out)
    run_dir = out / next(k for k, v in manifests.items() if v is manifest)
    names = [Path(f).name for f in manifest["files"]]
    assert any(n.startswith("results_") for n in names)
    assert any(n.startswith("samples_tofu_forget01_unlearn_") for n in names)
    for name in manifest["files"]:
        assert (run_dir / name).is_file()
    assert manifest["prompt_format"]["name"] == "chat"
    assert "chat template" in manifest["prompt_format"]["why"]
    assert len(manifest["model"]["fingerprint"]["weights_sha256"]) == 64
    assert len(manifest["data"]["sha256"]) == 64
    assert manifest["task"] == TASK and manifest["task_version"] is not None
    assert manifest["generation"]["do_sample"] is False
    assert manifest["metric_models"]["cosine_similarity"] == "unavailable: embedding_model=none"
    assert {"torch", "transformers", "lm_eval"} <= set(manifest["versions"])
    assert manifest["hardware"]["cpus"] >= 1 and manifest["wall_seconds"] > 0
    assert manifest["rerun"].startswith("lm-unlearn score ")
    from harness_ext.commands.cli import parse_command

    rerun = parse_command(shlex.split(manifest["rerun"])[1:])  # a command that parses
    assert rerun.command == "score" and len(rerun.models) == 1


def test_adapter_base_comes_from_its_config(runs, tiny_model_dir, tiny_lora_dir):
    out, manifests = runs
    adapter = manifest_of(manifests, tiny_lora_dir, out)
    assert located(out, adapter["model"]["pretrained"]) == tiny_model_dir.resolve()
    assert located(out, adapter["model"]["peft"]) == tiny_lora_dir.resolve()
    assert len(adapter["model"]["fingerprint"]["adapter"]["sha256"]) == 64


def test_a_model_without_chat_template_gets_the_plain_format(runs):
    _, manifests = runs
    (plain,) = [m for m in manifests.values() if m["model"]["given"].endswith("no-template")]
    assert plain["prompt_format"]["name"] == "plain"
    assert "no chat template" in plain["prompt_format"]["why"]


def test_scoring_again_with_identical_settings_is_skipped(runs, tiny_model_dir, capsys):
    out, manifests = runs
    assert score(str(tiny_model_dir), "--output", str(out)) == 0
    assert "already scored with identical settings" in capsys.readouterr().out
    assert len(completed_runs(out)) == len(manifests)


def test_a_folder_of_checkpoints_scores_each_and_skips_scored_ones(
    runs, tiny_model_dir, tiny_lora_dir, tmp_path, capsys
):
    out, manifests = runs
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "a").symlink_to(tiny_model_dir)
    (folder / "b").symlink_to(tiny_lora_dir)
    assert score(str(folder), "--output", str(out)) == 0
    printed = capsys.readouterr().out
    assert "[1/2]" in printed and "[2/2]" in printed
    # same weights, so the same settings hash as the runs already there: nothing new
    assert "0 scored, 2 skipped" in printed
    assert len(completed_runs(out)) == len(manifests)


def test_leaderboard_ranks_comparable_runs_and_keeps_others_apart(runs, tmp_path):
    out, _ = runs
    board = build_leaderboard([out], tmp_path / "board")
    ranked = [r for r in board.records if r.rank is not None]
    apart = [r for r in board.records if r.rank is None]
    # the model without a chat template was asked in the plain format: never in one table with
    # the chat-template runs; the run on other rows is apart too
    assert len(ranked) == 2 and len(apart) == 2
    assert sorted("rows per set" in r.note for r in apart) == [False, True]
    assert any("prompt format plain (table: chat)" in r.note for r in apart)
    assert [r.rank for r in ranked] == [1, 2]
    scores = [r.number("tofu_model_utility") for r in ranked]
    assert scores == sorted(scores, reverse=True)
    for name in ("LEADERBOARD.md", "leaderboard.csv", "leaderboard.html"):
        assert (tmp_path / "board" / name).is_file()
    with open(tmp_path / "board" / "leaderboard.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    for row in rows:  # every row links back to its run's results file
        assert (tmp_path / "board" / row["results_file"]).is_file()
        assert row["manifest"] and (tmp_path / "board" / row["manifest"]).is_file()
    page = (tmp_path / "board" / "leaderboard.html").read_text()
    assert page.count("<svg") >= 2 and "class='sortable'" in page
    for external in ("<link", "src=", "href='http", 'href="http', "@import"):
        assert external not in page  # self-contained: nothing fetched from elsewhere


def test_leaderboard_reads_plain_lm_eval_results(runs, tmp_path, tiny_model_dir):
    out, _ = runs
    plain = tmp_path / "plain"
    cmd = [sys.executable, "-m", "lm_eval", "run", "--model", "hf",
           "--model_args", f"pretrained={tiny_model_dir}", "--tasks", TASK, "--batch_size", "4",
           "--device", "cpu", "--apply_chat_template", "--output_path", str(plain),
           "--metadata", json.dumps({"max_rows_per_set": 2, "embedding_model": "none", "nli_model": "none"})]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    records = read_runs([out, plain])
    board = build_leaderboard([out, plain], tmp_path / "board")
    (lm_eval_run,) = [r for r in board.records if r.manifest is None]
    assert lm_eval_run.rank is not None  # same rows and settings: ranked with the others
    assert lm_eval_run.label.startswith(tiny_model_dir.name)
    assert len(records) == 5


def test_a_failed_scoring_run_leaves_nothing(tmp_path, tiny_model_dir, monkeypatch):
    import harness_ext.lm_eval_plugin.run

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(harness_ext.lm_eval_plugin.run, "run_tasks", broken)
    with pytest.raises(RuntimeError):
        main(["score", str(tiny_model_dir), "--output", str(tmp_path), *FAST])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("extra", "backend", "model_args"),
    [
        ([], "hf-unlearn", {}),
        (["--backend", "vllm", "--model-args", "tensor_parallel_size=2"], "vllm",
         {"tensor_parallel_size": 2}),
        (["--backend", "hf"], "hf", {}),
    ],
)  # fmt: skip
def test_the_backend_and_its_arguments_reach_lm_eval(
    tmp_path, tiny_model_dir, monkeypatch, extra, backend, model_args
):
    import harness_ext.lm_eval_plugin.run

    seen = {}

    def record(args, tasks, **kwargs):
        seen.update(model_args=args, tasks=tasks, **kwargs)
        raise RuntimeError("stop before scoring")

    monkeypatch.setattr(harness_ext.lm_eval_plugin.run, "run_tasks", record)
    with pytest.raises(RuntimeError, match="stop before scoring"):
        main(["score", str(tiny_model_dir), "--output", str(tmp_path), *FAST, *extra])
    assert seen["backend"] == backend
    assert seen["model_args"] == {"pretrained": str(tiny_model_dir), **model_args}
    assert seen["tasks"] == ["tofu_forget01_unlearn"]


def test_a_run_killed_before_it_lands_leaves_nothing_the_leaderboard_reads(
    tmp_path, tiny_model_dir
):
    """SIGKILL at the worst moment: every file written (manifest included), not yet renamed."""
    args = ["score", str(tiny_model_dir), "--output", str(tmp_path / "runs"), *FAST]
    program = (
        "import os, signal, sys\n"
        "import harness_ext.workflows.score as score\n"
        "score._move_into_place = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
        "from harness_ext.commands.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    done = subprocess.run([sys.executable, "-c", program, *args], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    (partial,) = (tmp_path / "runs").glob(".partial-*")
    assert (partial / MANIFEST).is_file() and list(partial.rglob("results_*.json"))
    assert completed_runs(tmp_path / "runs") == []
    assert read_runs([tmp_path / "runs"]) == []
    assert build_leaderboard([tmp_path / "runs"], tmp_path / "board").records == []


def test_bad_models_give_clear_errors(tmp_path, tiny_model_dir, capsys):
    with pytest.raises(ScoreError, match="does not exist"):
        resolve_model(str(tmp_path / "missing-model"))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "/gone/base"})
    )
    with pytest.raises(ScoreError, match="base model of adapter"):
        resolve_model(str(adapter))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["score", str(empty), "--output", str(tmp_path / "o")]) == 2
    assert "no model or adapter" in capsys.readouterr().err
    plain_model = without_chat_template(tiny_model_dir, tmp_path / "plain")
    code = main(
        [
            "score",
            str(plain_model),
            "--prompt-format",
            "chat",
            "--output",
            str(tmp_path / "o"),
            *FAST,
        ]
    )
    assert code == 2 and "no chat template" in capsys.readouterr().err
    code = main(
        ["score", str(tiny_model_dir), "--model-args", f"pretrained={tiny_model_dir}", *FAST]
    )
    assert code == 2 and "must not set pretrained" in capsys.readouterr().err


def browser():
    """Headless Debian chromium driven through its chromedriver; skipped where they are absent,
    except in CI (.ci/run installs them and sets LM_UNLEARN_REQUIRE_BROWSER=1)."""
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    if missing:
        message = f"{', '.join(missing)} not installed (apt install chromium chromium-driver)"
        if os.environ.get("LM_UNLEARN_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1400,1600"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))


def test_leaderboard_page_sorts_when_a_column_header_is_clicked(runs, tmp_path):
    from selenium.webdriver.common.by import By

    out, _ = runs
    board = build_leaderboard([out], tmp_path)
    driver = browser()
    try:
        driver.get((tmp_path / "leaderboard.html").as_uri())
        table = driver.find_element(By.CSS_SELECTOR, "table.sortable")
        # columns show short names ("forget prob"); the title gives the key and its definition
        titles = [th.get_attribute("title") or "" for th in table.find_elements(By.TAG_NAME, "th")]
        column = next(i for i, title in enumerate(titles) if title.startswith("forget_prob:"))
        assert table.find_elements(By.TAG_NAME, "th")[column].text.split() == ["forget", "prob"]

        def column_values() -> list[float]:
            rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
            cells = [row.find_elements(By.TAG_NAME, "td")[column] for row in rows]
            return [float(cell.get_attribute("data-value")) for cell in cells]

        before = column_values()
        assert len(before) == len(board.records) and before != sorted(before)
        table.find_elements(By.TAG_NAME, "th")[column].click()
        assert column_values() == sorted(before)  # ascending first
        table.find_elements(By.TAG_NAME, "th")[column].click()
        assert column_values() == sorted(before, reverse=True)
        driver.save_screenshot(str(tmp_path / "shot.png"))
        assert (tmp_path / "shot.png").stat().st_size > 20_000
    finally:
        driver.quit()


def test_rank_by_a_lower_is_better_metric_sorts_ascending(runs, tmp_path):
    out, _ = runs
    board = build_leaderboard([out], tmp_path / "board", rank_by="forget_prob")
    ranked = sorted((r for r in board.records if r.rank is not None), key=lambda r: r.rank)
    values = [r.number("forget_prob") for r in ranked]
    assert values == sorted(values)
    assert "ranked by forget prob (lower is better)" in board.markdown


def test_the_same_runs_give_the_same_files(runs, tmp_path):
    out, _ = runs
    build_leaderboard([out], tmp_path / "a")
    build_leaderboard([out], tmp_path / "b")
    for name in ("LEADERBOARD.md", "leaderboard.csv", "leaderboard.html"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_no_file_or_folder_under_the_results_names_a_local_path(runs, tiny_model_dir, tofu_dir):
    out, _ = runs
    roots = {str(tiny_model_dir.parent), str(tofu_dir), str(Path(__file__).resolve().parents[1])}
    for path in out.rglob("*"):
        assert not any(root in str(path.relative_to(out)) for root in roots), path
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            found = [root for root in roots if root in text]
            assert not found, f"{path} names {found}"


def test_a_copied_results_folder_gives_the_same_leaderboard_with_working_links(runs, tmp_path):
    out, _ = runs
    copy = tmp_path / "elsewhere" / "runs"
    shutil.copytree(out, copy)
    board = build_leaderboard([copy], tmp_path / "elsewhere" / "board")
    original = build_leaderboard([out], tmp_path / "board")
    assert [r.label for r in board.records] == [r.label for r in original.records]
    folder = tmp_path / "elsewhere" / "board"
    markdown = (folder / "LEADERBOARD.md").read_text()
    links = [part.split(")", 1)[0] for part in markdown.split("](")[1:]]
    page = (folder / "leaderboard.html").read_text()
    links += [part.split("'", 1)[0] for part in page.split("<a href='")[1:]]
    assert len(links) == 2 * len(board.records)
    for link in links:
        assert not Path(link).is_absolute() and (folder / link).is_file(), link


def test_one_model_scored_from_two_checkouts_is_one_row(tmp_path, tiny_model_dir, monkeypatch):
    """A fresh clone elsewhere recognises the runs committed by another: nothing is rescored."""
    first = tmp_path / "clone-a"
    shutil.copytree(tiny_model_dir, first / "models" / "target")
    shutil.copytree(tiny_model_dir, first / "models" / "retain")
    # another model, so that the retain reference differs from the scored one
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(first / "models" / "retain")
    with torch.no_grad():
        model.lm_head.weight.mul_(1.5)
    model.save_pretrained(first / "models" / "retain")

    def score_both() -> None:
        assert score("models/retain", "--label", "retain model", "--output", "results/runs") == 0
        (retain_run,) = [
            p for p in completed_runs(Path("results/runs")) if p.name.startswith("retain_model")
        ]
        args = ["models/target", "--reference", str(retain_run), "--output", "results/runs"]
        assert score(*args) == 0

    monkeypatch.chdir(first)
    score_both()
    second = tmp_path / "somewhere" / "clone-b"
    shutil.copytree(first, second)
    monkeypatch.chdir(second)
    score_both()
    board = build_leaderboard([Path("results/runs")], Path("results"))
    assert len(board.records) == 2
    assert len(completed_runs(Path("results/runs"))) == 2
    retain = next(r for r in board.records if r.label.startswith("retain model"))
    assert retain.role == "retain reference" and retain.number("forget_quality") == 1.0
