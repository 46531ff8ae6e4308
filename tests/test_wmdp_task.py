"""The `wmdp_unlearn` task on the project's WMDP and MMLU fixtures (the datasets' schemas, made-up
questions): equal, question by question, to lm-eval's own `wmdp_<domain>` and `mmlu_<subject>`
tasks run on the same fixture through `hf` and `hf-unlearn`; the change from the model before
unlearning by hand; bad options and bad data refused with the reason."""

import json
import shutil
from pathlib import Path

import pytest
from lm_eval import simple_evaluate
from lm_eval.api.task import ConfigurableTask
from lm_eval.tasks import TaskManager

from harness_ext.lm_eval_plugin.autoload import project_tasks_dir

FIXTURES = Path(__file__).parent / "fixtures" / "wmdp"
WMDP, MMLU = FIXTURES / "wmdp", FIXTURES / "mmlu"
SUBJECTS = ["anatomy", "astronomy"]
MODEL = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "tiny-tofu-llama"
OPTIONS = {"data_dir": str(WMDP), "mmlu_data_dir": str(MMLU), "mmlu_subjects": SUBJECTS}


def hf_model(backend: str):
    if backend == "hf":
        from lm_eval.models.huggingface import HFLM

        return HFLM(pretrained=str(MODEL), dtype="float32", device="cpu", batch_size=8)
    from harness_ext.lm_eval_plugin.backend import UnlearnHFLM

    return UnlearnHFLM(pretrained=str(MODEL), dtype="float32", device="cpu", batch_size=8)


def lm_eval_own_task(manager: TaskManager, name: str, folder: Path) -> ConfigurableTask:
    """lm-eval's own task, as its task index resolves it, reading the fixture instead of the
    hub (the only change)."""
    config = dict(manager.task_index[name].cfg)
    config["dataset_path"] = str(folder)
    return ConfigurableTask(config=config)


def _evaluate(model, tasks, metadata=None):
    """Our task by name (the project's tasks alone are indexed: fast), lm-eval's as objects."""
    manager = TaskManager(include_path=project_tasks_dir(), include_defaults=False,
                          metadata=metadata or {})  # fmt: skip
    return simple_evaluate(model=model, tasks=tasks, task_manager=manager, log_samples=True,
                           bootstrap_iters=0)  # fmt: skip


@pytest.fixture(scope="module")
def manager() -> TaskManager:
    """lm-eval's index of its own tasks, built once (it reads thousands of files)."""
    return TaskManager(include_path=project_tasks_dir())


@pytest.fixture(scope="module")
def own_and_ours(manager):
    """Both backends: lm-eval's own tasks and ours in one run each."""
    runs = {}
    for backend in ("hf", "hf-unlearn"):
        own = [lm_eval_own_task(manager, f"wmdp_{d}", WMDP) for d in ("bio", "chem", "cyber")]
        own += [lm_eval_own_task(manager, f"mmlu_{s}", MMLU) for s in SUBJECTS]
        runs[backend] = _evaluate(hf_model(backend), ["wmdp_unlearn", *own], OPTIONS)
    return runs


@pytest.mark.parametrize("backend", ["hf", "hf-unlearn"])
def test_each_question_is_asked_and_scored_as_lm_evals_own_tasks_do(own_and_ours, backend):
    results = own_and_ours[backend]
    ours = results["results"]["wmdp_unlearn"]
    our_samples = results["samples"]["wmdp_unlearn"]
    for domain in ("bio", "chem", "cyber"):
        own = results["results"][f"wmdp_{domain}"]
        assert ours[f"forget_wmdp_{domain}_acc,none"] == pytest.approx(own["acc,none"], abs=1e-12)
        rows = [s for s in our_samples if s["doc"]["set"] == f"wmdp_{domain}"]
        theirs = sorted(results["samples"][f"wmdp_{domain}"], key=lambda s: s["doc_id"])
        assert len(rows) == len(theirs) > 0
        for mine, their in zip(sorted(rows, key=lambda s: s["doc"]["row"]), theirs, strict=True):
            assert mine["arguments"] == their["arguments"]  # the same prompt and choices
            assert mine[f"forget_wmdp_{domain}_acc"] == their["acc"]
    asked = {s["doc"]["question"]: s for s in our_samples if s["doc"]["set"] == "mmlu"}
    answers = []
    for subject in SUBJECTS:
        for their in results["samples"][f"mmlu_{subject}"]:
            mine = asked[their["doc"]["question"]]
            assert mine["arguments"] == their["arguments"]  # the subject's own description
            assert mine["mmlu_acc"] == their["acc"]
            answers.append(their["acc"])
    # lm-eval's mmlu group weighs subjects by size: the mean over all questions
    assert ours["mmlu_acc,none"] == pytest.approx(sum(answers) / len(answers), abs=1e-12)
    wmdp = [s["forget_wmdp_acc"] for s in our_samples if s["doc"]["set"] != "mmlu"]
    assert ours["forget_wmdp_acc,none"] == pytest.approx(sum(wmdp) / len(wmdp), abs=1e-12)


def test_the_change_from_the_model_before_unlearning(tmp_path):
    from lm_eval.loggers import EvaluationTracker

    tracker = EvaluationTracker(output_path=str(tmp_path / "before"))
    ours = TaskManager(include_path=project_tasks_dir(), include_defaults=False, metadata=OPTIONS)
    before = simple_evaluate(model=hf_model("hf"), tasks=["wmdp_unlearn"], task_manager=ours,
                             log_samples=True, evaluation_tracker=tracker, bootstrap_iters=0)  # fmt: skip
    tracker.save_results_aggregated(results=before, samples=before["samples"])
    for name, samples in before["samples"].items():
        tracker.save_results_samples(task_name=name, samples=samples)
    # the "unlearned" model: the MUSE kit's, which never saw these questions either
    other = MODEL.parent / "muse" / "tiny-muse-llama"
    from lm_eval.models.huggingface import HFLM

    after_model = HFLM(pretrained=str(other), dtype="float32", device="cpu", batch_size=8)
    options = {**OPTIONS, "pre_unlearning_reference": str(tmp_path / "before"),
               "max_rows_per_set": 3}  # fmt: skip
    after = _evaluate(after_model, ["wmdp_unlearn"], options)
    first = {(s["doc"]["set"], s["doc"]["row"]): s for s in before["samples"]["wmdp_unlearn"]}
    then = after["samples"]["wmdp_unlearn"]
    assert len(then) == 3 * 3 + 3 * 2  # three rows of each domain and of each subject
    wmdp = [(s["forget_wmdp_acc"], first[(s["doc"]["set"], s["doc"]["row"])]["forget_wmdp_acc"])
            for s in then if s["doc"]["set"] != "mmlu"]  # fmt: skip
    mmlu = [(s["mmlu_acc"], first[("mmlu", s["doc"]["row"])]["mmlu_acc"])
            for s in then if s["doc"]["set"] == "mmlu"]  # fmt: skip
    metrics = after["results"]["wmdp_unlearn"]
    for name, pairs in (("forget_wmdp_acc_change", wmdp), ("mmlu_acc_change", mmlu)):
        expected = sum(a for a, _ in pairs) / len(pairs) - sum(b for _, b in pairs) / len(pairs)
        assert metrics[f"{name},none"] == pytest.approx(expected, abs=1e-12)
    recorded = after["configs"]["wmdp_unlearn"]["metadata"]["tofu"]
    assert recorded["scenario"] == "wmdp" and recorded["prompt_format"] == "lm-eval"
    assert recorded["rows_per_set"] == {"wmdp_bio": 3, "wmdp_chem": 3, "wmdp_cyber": 3, "mmlu": 6}
    assert sum(recorded["pre_unlearning_reference"]["rows"].values()) == len(first)


def _task(metadata):
    manager = TaskManager(include_path=project_tasks_dir(), include_defaults=False,
                          metadata=metadata)  # fmt: skip
    return manager.load(["wmdp_unlearn"])["tasks"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prompt_format": "plain"}, "does not take prompt_format"),
        ({"retain_reference": "x"}, "does not take retain_reference"),
        ({"domains": ["bio", "physics"]}, "domains must name some of bio, chem, cyber"),
        ({"mmlu_subjects": ["anatomy", "astrology"]}, "unknown MMLU subject 'astrology'"),
        ({"sets": ["forget"]}, "sets must name some of wmdp_bio"),
        ({"pre_unlearning_reference": "/no/such/run"}, "pre_unlearning_reference: reference"),
    ],
)
def test_bad_options_are_refused_with_the_reason(options, message):
    with pytest.raises(Exception, match=message):
        _task({**OPTIONS, **options})


def test_a_subset_of_sets_and_domains():
    task = _task({**OPTIONS, "domains": "cyber", "sets": ["wmdp_cyber", "mmlu"],
                  "max_rows_per_set": 2})  # fmt: skip
    docs = list(task["wmdp_unlearn"].eval_docs)
    sets = [(d["set"], d.get("subject")) for d in docs]
    assert sorted(sets) == sorted([("wmdp_cyber", "cyber")] * 2 + [("mmlu", "anatomy")] * 2
                                  + [("mmlu", "astronomy")] * 2)  # fmt: skip
    # rows keep their place in the whole set: astronomy's first question is MMLU row 5
    assert sorted(d["row"] for d in docs if d.get("subject") == "astronomy") == [5, 6]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"question": "Q?", "choices": ["a", "b", "c"], "answer": 0}, "a list of 4 texts"),
        ({"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 4}, "index of the right"),
        ({"choices": ["a", "b", "c", "d"], "answer": 1}, "no field 'question'"),
    ],
)
def test_a_malformed_row_is_named(tmp_path, row, message):
    from tofu_tasks.wmdp.data import WmdpDataError, read_wmdp

    folder = tmp_path / "wmdp"
    shutil.copytree(WMDP, folder)
    with (folder / "chem.jsonl").open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    with pytest.raises(WmdpDataError, match=message) as caught:
        read_wmdp("chem", folder)
    assert "(wmdp-chem/test) row 6" in str(caught.value)


def test_the_hub_is_the_default_and_offline_says_how_to_read_a_folder(monkeypatch):
    from tofu_tasks.wmdp.data import WmdpDataError, read_wmdp

    monkeypatch.delenv("WMDP_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(WmdpDataError, match=r"cannot read cais/wmdp \(wmdp-bio/test\) \(offline"):
        read_wmdp("bio")


def test_the_lm_eval_command_line_scores_the_fixture(tmp_path):
    """`lm_eval --tasks wmdp_unlearn` as a user runs it, from another folder, with the local
    folders given as task options."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
               f"pretrained={MODEL},dtype=float32", "--tasks", "wmdp_unlearn", "--device", "cpu",
               "--batch_size", "8", "--metadata", json.dumps(OPTIONS)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout
    for metric in ("forget_wmdp_bio_acc", "forget_wmdp_acc", "mmlu_acc", "mmlu_acc_change"):
        assert f"|{metric}" in table.replace(" ", "")
    assert "needs the model before unlearning" in table  # the change, without a reference


def test_fewshot_prompts_are_written_as_lm_eval_writes_its_own(manager):
    """The task option fewshot: k answered questions of the same domain (never the question
    itself) after the description, each written as lm-eval's own --num_fewshot writes an
    example (checked on lm-eval's mmlu_anatomy, whose dev split gives it examples; its WMDP
    tasks have no split to draw them from)."""
    from tofu_tasks.wmdp.data import read_mmlu
    from tofu_tasks.wmdp.documents import domain_docs, fewshot_examples

    def written(task, doc, examples) -> str:
        shown = "".join(
            task.doc_to_text(e) + task.config.target_delimiter + task.doc_to_choice(e)[e["answer"]]
            + task.config.fewshot_delimiter
            for e in examples
        )  # fmt: skip
        return task.config.description + shown + task.doc_to_text(doc)

    anatomy = lm_eval_own_task(manager, "mmlu_anatomy", MMLU)
    theirs = simple_evaluate(model=hf_model("hf"), tasks=[anatomy], num_fewshot=2,
                             log_samples=True, bootstrap_iters=0)["samples"]["mmlu_anatomy"]  # fmt: skip
    first_two = read_mmlu("anatomy", MMLU, "dev")[:2]  # lm-eval's first_n sampler
    for their in theirs:
        assert their["arguments"][0][0] == written(anatomy, their["doc"], first_two)

    bio = lm_eval_own_task(manager, "wmdp_bio", WMDP)
    pool = domain_docs("bio", str(WMDP))
    ours = _evaluate(hf_model("hf"), ["wmdp_unlearn"],
                     {**OPTIONS, "fewshot": 2, "sets": ["wmdp_bio"]})["samples"]["wmdp_unlearn"]  # fmt: skip
    assert len(ours) == len(pool) == 8
    for mine in ours:
        examples = fewshot_examples(mine["doc"], pool, 2)
        assert mine["doc"]["row"] not in {e["row"] for e in examples}
        assert mine["arguments"][0][0] == written(bio, mine["doc"], examples)
