"""`lm-unlearn audit --forget wmdp`: relearning on the forget corpora (with a control), 8-bit
weights and the few-shot prompt attack, each scored on the WMDP questions against zero-shot
before, with the model before unlearning's run as the target."""

import json
import re
from pathlib import Path

import pytest

from harness_ext.commands.cli import main
from harness_ext.metrics.recovery import recovery
from tests.test_wmdp_corpora import FORGET, RETAIN, write_corpus
from tests.test_wmdp_scoring import AFTER, BEFORE, OPTIONS

CONTROL = AFTER.parent / "tiny-muse-llama-retain"
WMDP_METRICS = {"forget_wmdp_acc", "forget_wmdp_bio_acc", "forget_wmdp_chem_acc",
                "forget_wmdp_cyber_acc"}  # fmt: skip


def _score(runs: Path, model: Path, label: str) -> Path:
    assert main(["score", str(model), "--forget", "wmdp", "--metadata", OPTIONS, "--label", label,
                 "--output", str(runs), "--batch-size", "8", "--device", "cpu"]) == 0  # fmt: skip
    (run,) = [p for p in runs.iterdir() if p.name.startswith(f"{label}-")]
    return run


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    work = tmp_path_factory.mktemp("wmdp-audit")
    corpora = work / "corpora"
    write_corpus(corpora, "cyber-forget-corpus", FORGET)
    write_corpus(corpora, "bio-forget-corpus", RETAIN)
    runs = work / "runs"
    runs.mkdir()
    usual, target = _score(runs, AFTER, "unlearned"), _score(runs, BEFORE, "before")
    command = ["audit", str(AFTER), "--forget", "wmdp", "--metadata", OPTIONS,
               "--label", "unlearned", "--target", str(target), "--control", str(CONTROL),
               "--attacks", "relearn,quantize,fewshot", "--bits", "8", "--fewshot-examples", "2",
               "--relearn-steps", "4", "--relearn-lr", "1e-3", "--runs", str(runs),
               "--output", str(work / "audit"), "--models-dir", str(work / "models"),
               "--batch-size", "8", "--device", "cpu"]  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WMDP_CORPORA_DIR", str(corpora))
        assert main(command) == 0
    report = json.loads((work / "audit" / "audit.json").read_text())
    return {"report": report, "usual": usual, "target": target, "runs": runs, "work": work}


def _metrics(run: Path) -> dict:
    (results,) = run.rglob("results_*.json")
    return json.loads(results.read_text())["results"]["wmdp_unlearn"]


def _attack(report: dict, variant: str) -> dict:
    (found,) = [a for a in report["attacks"] if a["variant"] == variant]
    return found


def test_before_and_target_come_from_the_runs_already_made(audited):
    usual, target = _metrics(audited["usual"]), _metrics(audited["target"])
    for attack in audited["report"]["attacks"]:
        assert set(attack["before"]["metrics"]) == WMDP_METRICS | {"forget_wmdp_acc_change"}
        assert attack["before"]["run"] == audited["usual"].name
        assert attack["before"]["note"].startswith("WMDP sets: aggregated")
        if attack["variant"] == "fewshot-2":
            continue  # the target is asked in the attack's own words there
        for name in WMDP_METRICS:
            assert attack["before"]["metrics"][name] == pytest.approx(usual[f"{name},none"])
            assert attack["target"]["metrics"][name] == pytest.approx(target[f"{name},none"])


def test_relearning_on_the_forget_corpora_with_a_control(audited):
    relearn = _attack(audited["report"], "relearn")
    assert relearn["settings"]["trained_on"] == (
        "wmdp:bio-forget-corpus[0:16],wmdp:cyber-forget-corpus[0:16]"  # 4 steps of 4 texts
    )
    card = json.loads(next((audited["work"] / "models").glob("unlearned-relearn-*/finetune_card.json"))
                      .read_text())  # fmt: skip
    assert card["rows"] == 32 and card["global_steps"] == 4
    rows = {r["metric"]: r for r in audited["report"]["rows"] if r["variant"] == "relearn"}
    row = rows["forget_wmdp_acc"]
    after = _metrics(audited["runs"] / relearn["after"]["run"])["forget_wmdp_acc,none"]
    assert row["after"] == pytest.approx(after)
    if isinstance(row["recovery"], float):
        assert row["recovery"] == pytest.approx(
            recovery(row["before"], row["after"], row["target"])
        )
    assert row["difference"] == pytest.approx(row["gain"] - row["control_gain"])


def test_the_fewshot_attack_asks_with_examples_of_the_same_domain(audited):
    fewshot = _attack(audited["report"], "fewshot-2")
    run = audited["runs"] / fewshot["after"]["run"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["attack"]["name"] == "fewshot"
    assert manifest["attack"]["settings"]["examples"] == 2
    (samples,) = run.rglob("samples_wmdp_unlearn_*.jsonl")
    for line in samples.read_text().splitlines():
        sample = json.loads(line)
        prompt = sample["arguments"]["gen_args_0"]["arg_0"]
        shown = re.findall(r"\nAnswer: [ABCD]\n\n", prompt)
        assert len(shown) == 2  # two answered examples, then the question itself
        assert prompt.endswith(sample["doc"]["question"].strip() + "\n" + "\n".join(
            f"{letter}. {choice}" for letter, choice in zip("ABCD", sample["doc"]["choices"],
                                                             strict=True)) + "\nAnswer:")  # fmt: skip
    assert set(_metrics(run)) >= {f"{m},none" for m in WMDP_METRICS}
    assert "mmlu_acc,none" not in _metrics(run)  # the utility set is not the audit's


@pytest.mark.parametrize(
    ("forget", "extra", "message"),
    [
        ("wmdp", ["--attacks", "paraphrase"], "WMDP has no rephrased questions"),
        ("forget01", ["--attacks", "fewshot"], "the few-shot attack is WMDP's"),
        (
            "wmdp",
            [
                "--attacks",
                "relearn",
                "--metadata",
                json.dumps({**json.loads(OPTIONS), "domains": ["chem"]}),
            ],
            "relearning needs a forget corpus",
        ),  # fmt: skip
        ("wmdp", ["--attacks", "fewshot", "--fewshot-examples", "0"], "--fewshot-examples must"),
    ],
)
def test_what_does_not_apply_is_refused(tmp_path, capsys, forget, extra, message):
    metadata = [] if "--metadata" in extra or forget != "wmdp" else ["--metadata", OPTIONS]
    command = ["audit", str(AFTER), "--forget", forget, *metadata, *extra,
               "--output", str(tmp_path / "audit"), "--runs", str(tmp_path / "runs")]  # fmt: skip
    assert main(command) != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
