"""LUME (SemEval-2025 Task 4) on its real data (`../shared/data/lume`): the loader and its checks,
the challenge's scores by hand on a few rows and its aggregate against the formula on made-up
numbers, and `lume_unlearn` end to end on a tiny model, every per-row and aggregate value
recomputed from the run's own samples."""

import json
from pathlib import Path

import pytest

from harness_ext.lm_eval_plugin.run import run_tasks
from harness_ext.metrics import lume
from harness_ext.metrics.privacy import auc
from tofu_tasks.lume.data import LumeDataError, read_split

LUME = Path(__file__).resolve().parents[2] / "shared" / "data" / "lume"
MODEL = LUME.parents[1] / "conformance" / "tiny-tofu-llama"


def test_the_real_files_are_read_and_checked():
    forget, retain = read_split("forget", LUME), read_split("retain", LUME)
    assert len(forget) == 2732 and len(retain) == 2734
    counts = {t: sum(r["task"] == t for r in forget) for t in ("Task1", "Task2", "Task3")}
    assert counts == {"Task1": 486, "Task2": 1500, "Task3": 746}
    assert sum(r["kind"] == "sc" for r in forget) == 866
    assert sum(r["kind"] == "sc" for r in retain) == 867


def test_a_bad_row_or_a_missing_folder_is_named(tmp_path, monkeypatch):
    (tmp_path / "forget.jsonl").write_text(
        json.dumps({"id": '"x"sc1', "input": "a", "output": "b", "task": "Task1"}) + "\n"
        + json.dumps({"id": '"x"zz1', "input": "a", "output": "b", "task": "Task1"}) + "\n"
    )  # fmt: skip
    with pytest.raises(LumeDataError, match=r"forget.jsonl line 2: id '\"x\"zz1' ends in neither"):
        read_split("forget", tmp_path)
    with pytest.raises(LumeDataError, match="has no retain.jsonl"):
        read_split("retain", tmp_path)
    monkeypatch.delenv("LUME_DATA_DIR", raising=False)
    monkeypatch.setenv("LM_UNLEARN_CACHE", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(LumeDataError, match="offline, set LUME_DATA_DIR"):
        read_split("retain")


def test_the_challenges_row_scores_by_hand():
    # ROUGE-L recall: the longest common subsequence over the expected completion's tokens
    assert lume.regurgitation("they met in a coffee shop", "they met in Madera") == pytest.approx(
        3 / 4
    )
    assert lume.regurgitation("", "anything at all") == 0.0
    assert lume.exact_match("  Madera \n", "madera") == 1.0
    assert lume.exact_match("Madera, a city", "Madera") == 0.0


def test_the_aggregate_follows_the_papers_formula_on_made_up_numbers():
    means = {}
    values = iter([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.35, 0.45, 0.55, 0.65])
    for split in ("forget", "retain"):
        for subtask in ("Task1", "Task2", "Task3"):
            for kind in ("sc", "qa"):
                means[(split, subtask, kind)] = next(values)
    forget_terms = [1 - 0.9, 1 - 0.8, 1 - 0.7, 1 - 0.6, 1 - 0.5, 1 - 0.4]
    retain_terms = [0.3, 0.2, 0.35, 0.45, 0.55, 0.65]
    by_hand = 12 / sum(1 / t for t in forget_terms + retain_terms)
    assert lume.task_aggregate(means) == pytest.approx(by_hand)
    assert lume.mia_score(0.62) == pytest.approx(0.76) and lume.mia_score(0.38) == pytest.approx(
        0.76
    )
    assert lume.final_score(by_hand, 0.76, 0.45) == pytest.approx((by_hand + 0.76 + 0.45) / 3)
    means[("forget", "Task2", "qa")] = 1.0  # every forget answer still right: 1 - 1 = 0
    assert lume.task_aggregate(means) == 0.0


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    mmlu = tmp_path_factory.mktemp("mmlu") / "results_2026.json"
    mmlu.write_text(json.dumps({"results": {"mmlu": {"acc,none": 0.43}}}))
    options = {"data_dir": str(LUME), "max_rows_per_set": 1, "max_new_tokens": 12,
               "holdout": "retain[2600:]", "mmlu": str(mmlu)}  # fmt: skip
    return run_tasks({"pretrained": str(MODEL), "dtype": "float32"}, ["lume_unlearn"],
                     metadata=options, batch_size=8, device="cpu")  # fmt: skip


def test_every_value_is_the_challenges_on_the_runs_own_outputs(scored):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    samples = scored["samples"]["lume_unlearn"]
    metrics = scored["results"]["lume_unlearn"]
    answered = [s for s in samples if s["doc"]["set"] != "holdout"]
    assert len(answered) == 12  # one row of each subtask and kind, forget and retain
    grouped = {}
    for sample in answered:
        doc = sample["doc"]
        # decoded with clean_up_tokenization_spaces, as the challenge's evaluation decodes
        output = tokenizer.clean_up_tokenization(sample["resps"][0][0])
        part = f"{doc['set']}_{doc['subtask'].lower()}_{doc['kind']}"
        rouge = lume.regurgitation(output, doc["answer"])
        assert sample[f"{part}_rougeL_recall"] == pytest.approx(rouge)
        score = rouge if doc["kind"] == "sc" else lume.exact_match(output, doc["answer"])
        if doc["kind"] == "qa":
            assert sample[f"{part}_exact_match"] == score
        grouped[(doc["set"], doc["subtask"], doc["kind"])] = score
    task = lume.task_aggregate(grouped)
    assert metrics["lume_task_aggregate,none"] == pytest.approx(task)
    members = [-s["mia_loss_auc"]["score"] for s in samples if s["doc"]["set"] == "forget"]
    others = [-s["mia_loss_auc"]["score"] for s in samples if s["doc"]["set"] == "holdout"]
    assert 0 < len(others) <= 6  # holdout rows: retain rows 2600 on, one per subtask and kind
    mia = lume.mia_score(auc(members, others))
    assert metrics["lume_mia_score,none"] == pytest.approx(mia)
    assert metrics["lume_final_score,none"] == pytest.approx((task + mia + 0.43) / 3)
    recorded = scored["configs"]["lume_unlearn"]["metadata"]["tofu"]
    assert recorded["scenario"] == "lume" and recorded["generation"]["max_new_tokens"] == 12


def test_without_a_holdout_or_mmlu_the_scores_say_what_they_need(tmp_path):
    options = {"data_dir": str(LUME), "max_rows_per_set": 1, "max_new_tokens": 4,
               "sets": ["forget", "retain"], "subtasks": ["Task2"]}  # fmt: skip
    results = run_tasks({"pretrained": str(MODEL), "dtype": "float32"}, ["lume_unlearn"],
                        metadata=options, batch_size=8, device="cpu")["results"]["lume_unlearn"]  # fmt: skip
    assert results["lume_mia_score,none"].startswith("N/A (no holdout rows")
    assert results["lume_final_score,none"] == results["lume_mia_score,none"]
    assert isinstance(results["lume_task_aggregate,none"], float)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prompt_format": "plain"}, "does not take prompt_format"),
        ({"subtasks": ["Task4"]}, "subtasks must name some of Task1"),
        ({"kinds": "sc,mc"}, "kinds must name some of sc, qa"),
        ({"holdout": "forget[0:10]"}, "holdout must be retain"),
        ({"holdout": "retain[2700:9000]"}, "holdout must be retain"),
        ({"mmlu": 1.5}, "mmlu must be an accuracy"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(Exception, match=message):
        run_tasks({"pretrained": str(MODEL), "dtype": "float32"}, ["lume_unlearn"],
                  metadata={"data_dir": str(LUME), "max_rows_per_set": 1, **options},
                  batch_size=8, device="cpu")  # fmt: skip


def test_score_and_leaderboard_give_lume_its_section(tmp_path, capsys):
    from harness_ext.commands.cli import main

    options = json.dumps({"data_dir": str(LUME), "max_rows_per_set": 1, "max_new_tokens": 8,
                          "holdout": "retain[2600:]", "mmlu": 0.4})  # fmt: skip
    command = ["score", str(MODEL), "--forget", "lume", "--metadata", options, "--output",
               str(tmp_path / "runs"), "--batch-size", "8", "--device", "cpu"]  # fmt: skip
    assert main(command) == 0
    (run,) = (tmp_path / "runs").iterdir()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["task"] == "lume_unlearn" and manifest["prompt_format"]["name"] == "lume"
    capsys.readouterr()
    assert main(command) == 0
    assert "already scored with identical settings" in capsys.readouterr().out
    assert main(["leaderboard", str(tmp_path / "runs"), "--output", str(tmp_path / "board")]) == 0
    page = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert "## lume_unlearn" in page and "ranked by LUME final (higher is better)" in page
    header = next(line for line in page.splitlines() if line.startswith("| # |"))
    assert "| LUME final | LUME task agg. | LUME MIA score |" in header


def test_lume_rows_train_in_their_own_format(tmp_path, monkeypatch, tiny_model_dir):
    """`--forget lume:forget[...]` trains on LUME's rows: the input as it is (the task's prompt),
    the expected output glued on and alone supervised; the retain rows are LUME's retain file."""
    from transformers import AutoTokenizer

    from harness_ext.prompts import get_prompt_format
    from unlearn_methods.config import UnlearnConfig
    from unlearn_methods.data import IGNORE_INDEX, PromptEncoder, load_unlearn_data
    from unlearn_methods.train import dry_run

    monkeypatch.setenv("LUME_DATA_DIR", str(LUME))
    settings = dry_run(UnlearnConfig(method="GA+GD", model=str(tiny_model_dir),
                                     output_dir=str(tmp_path / "x"), forget="lume:forget[:6]"))  # fmt: skip
    assert settings["prompt_format"] == "lume"
    data = load_unlearn_data("lume:forget[:2]")
    first = read_split("forget", LUME)[0]
    assert data.retain_split == "lume:retain" and len(data.retain) == 2734
    assert data.forget[0] == {"question": first["input"], "answer": first["output"]}
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    encoded = PromptEncoder(tokenizer, get_prompt_format("lume"), 4096).encode(
        first["input"], first["output"]
    )
    supervised = [t for t in encoded["labels"] if t != IGNORE_INDEX]
    assert tokenizer.decode(supervised[:-1]) == first["output"]  # then EOS


def test_evaluation_during_training_scores_lume(tmp_path, monkeypatch, tiny_model_dir):
    """`--eval-every` on LUME's rows scores lume_unlearn on the model in memory (its own
    prompts), and a rule names LUME's metrics."""
    import torch

    from unlearn_methods.config import UnlearnConfig
    from unlearn_methods.train import dry_run, read_run_card, train

    monkeypatch.setenv("LUME_DATA_DIR", str(LUME))
    base = dict(method="GA+GD", model=str(tiny_model_dir), forget="lume:forget[:8]",
                retain="lume:retain[:8]", max_length=512)  # fmt: skip
    with pytest.raises(ValueError, match="the LUME task reports"):
        dry_run(UnlearnConfig(**base, output_dir=str(tmp_path / "x"), eval_every=2,
                              select="forget_rougeL_recall<=0.3"))  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = train(UnlearnConfig(
            **base, output_dir=str(tmp_path / "run"), max_steps=4, per_device_train_batch_size=4,
            effective_batch_size=4, learning_rate=1e-3, warmup_steps=0, bf16=False,
            disable_tqdm=True, eval_every=2, eval_rows=1,
            eval_metadata={"max_new_tokens": 4, "sets": ["forget", "retain"]},
            select="best:lume_task_aggregate",
        ))  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    card = read_run_card(out)
    assert card["evaluation"]["task"] == "lume_unlearn"
    assert card["evaluation"]["apply_chat_template"] is False
    steps = [r["step"] for r in card["evaluation"]["history"]]
    assert steps == [2, 4]
    for record in card["evaluation"]["history"]:
        assert isinstance(record["metrics"]["lume_task_aggregate"], float)
        assert "forget_task2_qa_exact_match" in record["metrics"]
    assert card["selection"]["metric"] == "lume_task_aggregate"


def test_rows_count_within_the_chosen_subtasks_as_training_names_them(monkeypatch):
    """`lume:forget/Task2[:12]` trains on the rows `{"subtasks": ["Task2"], "forget_rows":
    "0:12"}` scores; the holdout counts the same way and may not overlap the retain rows."""
    from tofu_tasks.lume.data import split_and_subtask
    from tofu_tasks.lume.documents import lume_docs
    from tofu_tasks.lume.options import LumeOptions
    from unlearn_methods.config import UnlearnConfig
    from unlearn_methods.data import read_rows, retain_split_for
    from unlearn_methods.evaluation_plan import eval_task

    monkeypatch.setenv("LUME_DATA_DIR", str(LUME))
    options = LumeOptions.from_metadata({"subtasks": ["Task2"], "forget_rows": "0:12",
                                         "retain_rows": "0:12", "holdout": "retain[12:24]"})  # fmt: skip
    docs = lume_docs(options)
    for set_name, spec in (("forget", "lume:forget/Task2[:12]"),
                           ("retain", "lume:retain/Task2[:12]"),
                           ("holdout", "lume:retain/Task2[12:24]")):  # fmt: skip
        scored = [(d["question"], d["answer"]) for d in docs if d["set"] == set_name]
        trained = [(r["question"], r["answer"]) for r in read_rows(spec)]
        assert sorted(scored) == sorted(trained) and len(scored) == 12
    # two biographies of Task2 (a completion and five questions each); "row" is the file's line
    task2 = [n for n, r in enumerate(read_split("forget", LUME)) if r["task"] == "Task2"][:12]
    assert sorted(d["row"] for d in docs if d["set"] == "forget") == task2
    assert retain_split_for("lume:forget/Task2[:12]") == "lume:retain/Task2"
    config = UnlearnConfig(
        method="GA+GD", model="m", output_dir="o", forget="lume:forget/Task2[:12]"
    )
    assert eval_task(config) == ("lume_unlearn", {"subtasks": ["Task2"], "forget_rows": "0:12"})
    with pytest.raises(LumeDataError, match="one subtask's rows of it"):
        split_and_subtask("forget/Task9")
    with pytest.raises(Exception, match="share rows"):
        lume_docs(LumeOptions.from_metadata({"retain_rows": "0:13", "holdout": "retain[12:24]"}))
    with pytest.raises(Exception, match="forget_rows must be 'start:stop'"):
        LumeOptions.from_metadata({"forget_rows": "first"})


def test_the_lm_eval_command_line_gives_every_metric_on_the_real_data(tmp_path):
    """`lm_eval --tasks lume_unlearn --metadata '{"data_dir": ...}'` as a user runs it, from
    another folder: every metric of the task in the table, the scores numbers."""
    import subprocess
    import sys

    from tofu_tasks.lume.metric_list import metric_list

    options = {"data_dir": str(LUME), "max_rows_per_set": 1, "max_new_tokens": 8,
               "holdout": "retain[2600:]", "mmlu": 0.4}  # fmt: skip
    command = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
               f"pretrained={MODEL},dtype=float32", "--tasks", "lume_unlearn", "--device", "cpu",
               "--batch_size", "8", "--metadata", json.dumps(options)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout.replace(" ", "")
    for entry in metric_list():
        assert f"|{entry['metric']}|" in table, entry["metric"]
    for metric in ("lume_task_aggregate", "lume_mia_score", "lume_final_score"):
        cells = [c.strip() for c in next(
            line for line in done.stdout.splitlines() if f"|{metric}" in line.replace(" ", "")
        ).split("|")]  # fmt: skip
        assert 0.0 <= float(cells[cells.index(metric) + 2]) <= 1.0, metric
