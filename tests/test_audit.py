"""`lm-unlearn audit` on a tiny model that memorised, then unlearned, eight forget01 answers.

One audit runs every attack (relearn, 8- and 4-bit quantisation, paraphrased questions) with the
memorised model as the target; the tests read what it wrote: the scoring runs and their
manifests, the attacked models, the table, and the leaderboard built from the runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from harness_ext.commands.cli import main
from harness_ext.metrics.recovery import comparison, forget_metrics, recovery
from harness_ext.workflows.score_inputs import MANIFEST
from harness_ext.workflows.score_runs import completed_runs

ROWS = 8  # forget01 rows memorised, then unlearned
RELEARN_ROWS = ":4"  # relearned; rows 4.. are scored (cut to 4 rows by max_rows_per_set)
SCORED = {"forget": 4, "retain": 1, "real_authors": 1, "world_facts": 1}
FAST = {"max_rows_per_set": SCORED, "embedding_model": "none", "nli_model": "none"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and the machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _examples(tokenizer):
    from harness_ext.prompts import get_prompt_format
    from unlearn_methods.data import PromptEncoder, read_rows

    encoder = PromptEncoder(tokenizer, get_prompt_format("plain"), 128)
    return [encoder.encode(r["question"], r["answer"]) for r in read_rows(f"forget01[:{ROWS}]")]


def _gradient_ascent(source: Path, output: Path, steps: int = 10) -> None:
    """Unlearn the memorised rows: a few Adam steps up their loss (GA, no regulariser)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq

    tokenizer = AutoTokenizer.from_pretrained(source)
    batch = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)(
        _examples(tokenizer)
    )
    model = AutoModelForCausalLM.from_pretrained(source)
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        optimiser.zero_grad()
        (-model(**batch).loss).backward()
        optimiser.step()
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    """The tiny model after memorising forget01[:8] (the target), and after unlearning them."""
    from unlearn_methods.config import FinetuneConfig
    from unlearn_methods.finetune import finetune

    root = tmp_path_factory.mktemp("audit-models")
    memorised = finetune(
        FinetuneConfig(
            model=str(tiny_model_dir), output_dir=str(root / "memorised"),
            data=f"forget01[:{ROWS}]", num_train_epochs=60, learning_rate=1e-2,
            per_device_train_batch_size=ROWS, effective_batch_size=ROWS, max_length=128,
            prompt_format="plain", lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        )
    )  # fmt: skip
    _gradient_ascent(memorised, root / "unlearned")
    return {"memorised": memorised, "unlearned": root / "unlearned"}


@pytest.fixture(scope="module")
def audited(tmp_path_factory, models, tiny_model_dir):
    """One audit with every attack, the untrained tiny model (it never saw the forget rows) as
    the control; returns the report, the folders and its wall time."""
    from harness_ext.workflows.audit import run_audit
    from harness_ext.workflows.audit_settings import AuditSettings, RelearnSettings
    from harness_ext.workflows.score_inputs import ScoreSettings

    root = tmp_path_factory.mktemp("audit")
    scoring = ScoreSettings(prompt_format="plain", metadata=dict(FAST), batch_size="8",
                            device="cpu", output=root / "runs")  # fmt: skip
    relearn = RelearnSettings(rows=RELEARN_ROWS, steps=10, learning_rate=1e-3, max_length=128)
    started = time.time()
    report = run_audit(
        AuditSettings(model=str(models["unlearned"]), scoring=scoring, target=str(models["memorised"]),
                      control=str(tiny_model_dir), output=root / "audit",
                      models_dir=root / "attacked", relearn=relearn)
    )  # fmt: skip
    print(f"audit of every attack: {time.time() - started:.1f} s")
    return {"report": report, "root": root, "runs": root / "runs"}


def _manifests(runs: Path) -> dict[str, dict]:
    return {p.name: json.loads((p / MANIFEST).read_text()) for p in completed_runs(runs)}


def _attacked(runs: Path, variant: str) -> tuple[Path, dict]:
    (found,) = [
        (runs / name, m) for name, m in _manifests(runs).items()
        if (m.get("attack") or {}).get("variant") == variant and m["attack"]["role"] == "after"
    ]  # fmt: skip
    return found


def _rows(report, variant: str) -> dict[str, dict]:
    return {r["metric"]: r for r in report.rows if r["variant"] == variant}


def _forget_questions(run_dir: Path) -> list[tuple[int, str]]:
    (samples,) = run_dir.rglob("samples_*.jsonl")
    docs = [json.loads(line)["doc"] for line in samples.read_text().splitlines() if line.strip()]
    return sorted((d["row"], d["question"]) for d in docs if d["set"] == "forget")


# ---------------------------------------------------------------------- recovery
def test_recovery_on_hand_made_numbers():
    assert recovery(before=0.2, after=0.6, target=1.0) == pytest.approx(0.5)
    assert recovery(before=0.2, after=0.2, target=1.0) == 0.0
    assert recovery(before=0.2, after=1.0, target=1.0) == pytest.approx(1.0)
    assert recovery(before=0.2, after=1.4, target=1.0) == pytest.approx(1.5)  # beyond the target
    # a metric that rises with forgetting (the forget truth ratio, say): same formula
    assert recovery(before=0.9, after=0.6, target=0.3) == pytest.approx(0.5)
    # no gap to close, or a value missing: no recovery
    assert recovery(before=0.5, after=0.7, target=0.5) is None
    assert recovery(before="N/A (no rows)", after=0.7, target=1.0) is None
    assert recovery(before=0.2, after=0.7, target=None) is None


def test_every_forget_metric_is_compared_the_leading_three_first():
    before = {"forget_prob": 0.1, "forget_rougeL_recall": 0.2, "forget_zeta": 0.3,
              "forget_truth_ratio": 0.4, "retain_prob": 0.9, "forget_efficacy": {"set": "x"}}  # fmt: skip
    after = {"forget_prob": 0.5, "forget_rougeL_recall": 0.6, "forget_zeta": "N/A (why)",
             "forget_truth_ratio": 0.4, "forget_alpha": 0.1}  # fmt: skip
    rows = comparison(before, after, {"forget_rougeL_recall": 1.0})
    assert [r["metric"] for r in rows] == ["forget_rougeL_recall", "forget_prob",
        "forget_truth_ratio", "forget_alpha", "forget_zeta"]  # fmt: skip
    first = rows[0]
    assert first["gain"] == pytest.approx(0.4) and first["recovery"] == pytest.approx(0.5)
    assert rows[-1]["after"] == "N/A (why)" and rows[-1]["gain"] is None
    assert "retain_prob" not in forget_metrics(before)
    assert "control_gain" not in first  # no control given


def test_a_gap_within_its_noise_gives_no_recovery_and_a_control_gives_a_difference():
    before = {"forget_rougeL_recall": 0.30, "forget_prob": 0.10}
    after = {"forget_rougeL_recall": 0.45, "forget_prob": 0.60}
    target = {"forget_rougeL_recall": 0.32, "forget_prob": 0.90}
    noise = {"forget_rougeL_recall": 0.05, "forget_prob": 0.05}
    control = ({"forget_rougeL_recall": 0.30, "forget_prob": 0.12},
               {"forget_rougeL_recall": 0.35, "forget_prob": 0.52})  # fmt: skip
    rouge, prob = comparison(before, after, target, noise, control)[:2]
    # ROUGE-L: the unlearned model already scores like the target (0.02 < 0.05), never -7.5
    assert rouge["recovery"].startswith("N/A (the unlearned model already scores like the target")
    assert prob["recovery"] == pytest.approx(0.5 / 0.8)
    # relearning raised the control's probability by 0.40: it brought back 0.10 beyond that
    assert prob["gain"] == pytest.approx(0.5) and prob["control_gain"] == pytest.approx(0.4)
    assert prob["difference"] == pytest.approx(0.1)
    assert rouge["difference"] == pytest.approx(0.15 - 0.05)


def test_the_noise_of_a_gap_comes_from_resampling_the_rows():
    from harness_ext.metrics.aggregate import aggregate_mean_or_na
    from harness_ext.metrics.noise import gap_noise

    rows = range(40)
    before = {("forget", i): {"m": 0.2 + 0.01 * (i % 5)} for i in rows}
    same_gap = {k: {"m": v["m"] + 0.3} for k, v in before.items()}
    spread = {("forget", i): {"m": 0.2 + (0.5 if i % 2 else -0.1)} for i in rows}
    assert gap_noise(before, same_gap, {"m": aggregate_mean_or_na})["m"] == pytest.approx(0.0)
    noisy = gap_noise(before, spread, {"m": aggregate_mean_or_na})["m"]
    # row gaps of +0.5 and -0.1 (sd 0.3, the offsets aside): 2 sd of a mean of 40 is ~0.095
    assert 0.06 < noisy < 0.13
    assert gap_noise(before, spread, {"m": aggregate_mean_or_na}, seed=1)["m"] == pytest.approx(
        noisy, rel=0.3
    )


def test_relearning_splits_name_their_rows():
    from harness_ext.row_slices import row_slices
    from harness_ext.workflows.audit_settings import AuditError, relearn_rows

    trained, scored = relearn_rows(None, 40)  # forget01: two authors of 20 rows
    assert row_slices(trained) == [(0, 10), (20, 30)]
    assert row_slices(scored) == [(10, 20), (30, 40)]
    trained, scored = relearn_rows(None, 40, "other-authors")
    assert (row_slices(trained), row_slices(scored)) == ([(0, 20)], [(20, 40)])
    trained, scored = relearn_rows(None, 200, "other-authors")  # forget05: 10 authors
    assert (row_slices(trained), row_slices(scored)) == ([(0, 100)], [(100, 200)])
    assert row_slices(relearn_rows(None, 200)[1])[:2] == [(10, 20), (30, 40)]
    assert relearn_rows(":4", 40) == (list(range(4)), list(range(4, 40)))
    with pytest.raises(AuditError, match="whole authors"):
        relearn_rows(None, 30)
    with pytest.raises(AuditError, match="must be one of same-authors, other-authors"):
        relearn_rows(None, 40, "halves")


# ---------------------------------------------------------------------- bad inputs
def _audit_cli(tmp_path: Path, *args: str) -> int:
    return main(["audit", *args, "--output", str(tmp_path / "out"), "--runs",
                 str(tmp_path / "runs"), "--models-dir", str(tmp_path / "models")])  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attacks", "relearn,finetune"], "unknown attack 'finetune'; known attacks: relearn, "
         "quantize, paraphrase"),
        (["--attacks", ""], "known attacks: relearn, quantize, paraphrase"),
        (["--bits", "3"], "--bits takes 8 and/or 4"),
        (["--bits", "8,four"], "--bits takes 8 and/or 4 (e.g. 8,4), got '8,four'"),
        (["--relearn-rows", "5:10"], "must start at 0 or end at 40"),
        (["--relearn-rows", "0:40"], "leaving rows to score"),
        (["--relearn-steps", "0"], "steps ≥ 1"),
        (["--target", "no/such/model"], "--target: model 'no/such/model' does not exist"),
        (["--metadata", '{"forget_rows": "0:10"}'], "drop forget_rows"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_and_nothing_is_written(
    tmp_path, tiny_model_dir, capsys, args, message
):
    assert _audit_cli(tmp_path, str(tiny_model_dir), *args) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_missing_model_is_refused_and_nothing_is_written(tmp_path, capsys):
    assert _audit_cli(tmp_path, str(tmp_path / "nothing-here")) == 2
    assert "does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- relearn
def test_relearning_half_the_forget_set_brings_the_other_half_back(audited, models):
    rows = _rows(audited["report"], "relearn")
    rouge = rows["forget_rougeL_recall"]
    print(f"relearn: forget ROUGE-L {rouge['before']:.3f} -> {rouge['after']:.3f} "
          f"(target {rouge['target']:.3f}, recovery {rouge['recovery']:.2f})")  # fmt: skip
    assert rouge["target"] > 0.9  # the memorised model knows the scored rows
    assert rouge["before"] < 0.5  # unlearning removed most of it
    assert rouge["after"] > rouge["before"] + 0.1  # relearning rows 0-3 brought rows 4-7 back
    assert rouge["recovery"] == pytest.approx(
        (rouge["after"] - rouge["before"]) / (rouge["target"] - rouge["before"])
    )
    assert rows["forget_prob"]["after"] > rows["forget_prob"]["before"]


def test_relearn_scores_before_and_after_on_the_same_other_rows(audited, models):
    runs = audited["runs"]
    after_dir, manifest = _attacked(runs, "relearn")
    before_dir = runs / manifest["attack"]["before"]["run"]
    scored = _forget_questions(after_dir)
    assert [row for row, _ in scored] == [4, 5, 6, 7]  # not the relearned rows 0-3
    assert _forget_questions(before_dir) == scored
    settings = manifest["attack"]["settings"]
    assert settings["trained_on"] == "forget01[0:4]" and settings["steps"] == 10
    assert settings["learning_rate"] == 1e-3 and settings["scored_rows"] == "4:40"
    assert settings["split"] == "rows given by hand"


def test_relearning_runs_on_the_control_too_and_the_table_gives_the_difference(audited):
    runs = audited["runs"]
    _, manifest = _attacked(runs, "relearn")
    control = manifest["attack"]["control"]
    before_dir, after_dir = runs / control["before"]["run"], runs / control["after"]["run"]
    assert (
        _forget_questions(before_dir)
        == _forget_questions(after_dir)
        == _forget_questions(runs / manifest["attack"]["before"]["run"])
    )
    after_manifest = json.loads((after_dir / MANIFEST).read_text())
    assert after_manifest["attack"]["role"] == "control"
    assert after_manifest["attack"]["settings"] == manifest["attack"]["settings"]
    rows = _rows(audited["report"], "relearn")
    prob = rows["forget_prob"]
    assert prob["control_gain"] == pytest.approx(
        control["after"]["metrics"]["forget_prob"] - control["before"]["metrics"]["forget_prob"]
    )
    assert prob["difference"] == pytest.approx(prob["gain"] - prob["control_gain"])
    # the other attacks teach nothing: no control
    assert "control_gain" not in _rows(audited["report"], "quantize-8bit")["forget_prob"]
    # noise of every gap was measured; control runs are not ranked
    assert manifest["attack"]["gap_noise"]["forget_rougeL_recall"] >= 0


def test_attacked_runs_say_the_attack_and_the_input_models_fingerprint(audited, models):
    from harness_ext.provenance import model_fingerprint

    weights = model_fingerprint(str(models["unlearned"]))["weights_sha256"]
    for variant in ("relearn", "quantize-8bit", "quantize-4bit", "paraphrase"):
        _, manifest = _attacked(audited["runs"], variant)
        attack = manifest["attack"]
        assert attack["input_model"]["fingerprint"]["weights_sha256"] == weights
        assert attack["settings"] and attack["before"]["metrics"]["forget_rougeL_recall"] >= 0
        target = attack["target"]["metrics"]["forget_rougeL_recall"]
        # the memorised model knows its answers, less so when asked in other words
        assert target > (0.2 if variant == "paraphrase" else 0.9)
        assert manifest["name"].startswith(f"unlearned + {variant} · ")
        assert not Path(attack["input_model"]["given"]).is_absolute()
        # the table holds forget metrics: the utility sets are not scored
        assert set(manifest["data"]["rows_per_set"]) == {"forget"}  # no holdout in FAST


def test_the_unlearned_model_before_the_attacks_is_scored_on_the_same_sets_apart(audited):
    """The usual run of the unlearned model scores every set; the audit's own "before" run
    scores the forget set only, once for the attacks that keep the rows, and stays unranked."""
    before = [m for m in _manifests(audited["runs"]).values()
              if (m.get("attack") or {}).get("role") == "before"]  # fmt: skip
    names = sorted(m["name"] for m in before)
    assert names == ["unlearned (forget and holdout sets) · unlearned · forget01",
                     "unlearned (rows 4:40 of the forget and holdout sets) · unlearned · forget01"]  # fmt: skip
    for manifest in before:
        assert set(manifest["data"]["rows_per_set"]) == {"forget"}


# ---------------------------------------------------------------------- quantize
def _linear(model):
    return model.model.layers[0].mlp.up_proj


def test_quantised_weights_differ_from_the_originals_and_are_scored(audited, models):
    import bitsandbytes.functional as bnb_functional
    from transformers import AutoModelForCausalLM

    original = _linear(AutoModelForCausalLM.from_pretrained(models["unlearned"])).weight.detach()
    for bits in (8, 4):
        run_dir, manifest = _attacked(audited["runs"], f"quantize-{bits}bit")
        folder = (audited["runs"] / manifest["model"]["given"]).resolve()
        config = json.loads((folder / "config.json").read_text())["quantization_config"]
        assert config[f"load_in_{bits}bit"] is True
        weight = _linear(AutoModelForCausalLM.from_pretrained(folder, device_map="cpu")).weight
        if bits == 4:
            assert weight.quant_state.quant_type == "nf4"
            restored = bnb_functional.dequantize_4bit(weight.data, weight.quant_state)
        else:
            assert weight.dtype == torch.int8
            restored = weight.data.float() * weight.SCB.float().unsqueeze(1) / 127
        error = (restored.float() - original).abs().mean() / original.abs().mean()
        print(f"{bits}-bit: mean relative weight error {error:.4f}")
        assert 0 < error < (0.05 if bits == 8 else 0.3)
        assert manifest["attack"]["settings"]["bits"] == bits
        assert "bitsandbytes" in manifest["attack"]["settings"]["library"]
        assert list(run_dir.rglob("results_*.json"))
    rows = _rows(audited["report"], "quantize-4bit")
    assert isinstance(rows["forget_prob"]["after"], float)


# ---------------------------------------------------------------------- paraphrase
def test_the_paraphrase_variant_asks_tofus_rephrased_questions(audited, tofu_dir):
    runs = audited["runs"]
    after_dir, manifest = _attacked(runs, "paraphrase")
    source = [json.loads(line) for line in (tofu_dir / "forget01_perturbed.json").open()]
    asked = _forget_questions(after_dir)
    assert asked == [(i, source[i]["paraphrased_question"]) for i in range(SCORED["forget"])]
    assert all(source[i]["question"] != q for i, q in asked)
    before = _forget_questions(runs / manifest["attack"]["before"]["run"])
    assert before == [(i, source[i]["question"]) for i in range(SCORED["forget"])]
    assert manifest["task_metadata"]["forget_question"] == "paraphrased"
    results = json.loads(next(after_dir.rglob("results_*.json")).read_text())
    options = results["configs"]["tofu_forget01_unlearn"]["metadata"]["tofu"]["options"]
    assert options["forget_question"] == "paraphrased"  # recorded in the run's provenance


def test_forget_question_is_a_task_option_that_changes_the_settings(tiny_model_dir):
    from harness_ext.workflows.score_inputs import ScoreSettings, resolve_model
    from harness_ext.workflows.score_runs import settings_hash, settings_key
    from tofu_tasks.data import TofuDataError, build_eval_docs

    spec = resolve_model(str(tiny_model_dir))
    keys = [
        settings_hash(settings_key(spec, ScoreSettings(metadata={**FAST, **extra}), "plain"))
        for extra in ({}, {"forget_question": "original"}, {"forget_question": "paraphrased"})
    ]
    assert len(set(keys)) == 3
    with pytest.raises(TofuDataError, match="forget_question must be one of original, paraphrased"):
        build_eval_docs("forget01", max_rows_per_set=1, forget_question="reworded")


# ---------------------------------------------------------------------- outputs
def test_the_audit_writes_one_table_as_markdown_csv_and_json(audited):
    report = audited["report"]
    folder = audited["root"] / "audit"
    assert sorted(p.name for p in folder.iterdir()) == ["audit.csv", "audit.json", "audit.md"]
    markdown = (folder / "audit.md").read_text()
    assert "| model | attack | metric | before | after | gain | target | recovery |" in markdown
    relearn = "relearn (rows given by hand: trained rows 0-3), 10 steps, lr 0.001"
    assert {r["attack"] for r in report.rows} == {
        relearn, "quantize-8bit", "quantize-4bit", "paraphrase"
    }  # fmt: skip
    payload = json.loads((folder / "audit.json").read_text())
    assert payload["format"] == "lm-unlearn-audit/1" and len(payload["attacks"]) == 4
    assert payload["rows"] == json.loads(json.dumps(report.rows))
    header = (folder / "audit.csv").read_text().splitlines()[0]
    assert header.startswith(
        "model,attack,metric,before,after,gain,target,recovery,gap_noise,"
        "control_before,control_after,control_gain,difference"
    )


def test_a_second_audit_reuses_the_attacked_models_and_runs(
    audited, models, tiny_model_dir, capsys
):
    from dataclasses import replace

    from harness_ext.workflows.audit import run_audit
    from harness_ext.workflows.audit_settings import AuditSettings, RelearnSettings
    from harness_ext.workflows.score_inputs import ScoreSettings

    root = audited["root"]
    scoring = ScoreSettings(prompt_format="plain", metadata=dict(FAST), batch_size="8",
                            device="cpu", output=audited["runs"])  # fmt: skip
    relearn = RelearnSettings(rows=RELEARN_ROWS, steps=10, learning_rate=1e-3, max_length=128)
    before = len(completed_runs(audited["runs"]))
    settings = AuditSettings(model=str(models["unlearned"]), scoring=scoring,
                             target=str(models["memorised"]), control=str(tiny_model_dir),
                             output=root / "audit-again", models_dir=root / "attacked",
                             relearn=relearn)  # fmt: skip
    report = run_audit(replace(settings, attacks=("relearn", "quantize")))
    printed = capsys.readouterr().out
    assert "relearn: reusing" in printed and "quantize-4bit: reusing" in printed
    assert "scoring on" not in printed  # every run was already made
    assert len(completed_runs(audited["runs"])) == before
    assert report.rows == [r for r in audited["report"].rows if r["variant"] != "paraphrase"]


def test_the_leaderboard_keeps_attacked_runs_apart_in_a_robustness_table(audited, tmp_path):
    from harness_ext.workflows.leaderboard import build_leaderboard

    board = build_leaderboard([audited["runs"]], tmp_path / "board")
    ranked = [r for r in board.records if r.rank is not None]
    assert all("attack" not in (r.manifest or {}) for r in ranked)
    markdown = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert "## Robustness (lm-unlearn audit)" in markdown
    relearn = "relearn (rows given by hand: trained rows 0-3), 10 steps, lr 0.001"
    for attack in (relearn, "quantize-8bit", "paraphrase"):
        assert f"| {attack} |" in markdown
    assert "forget ROUGE-L: gain − control's (control's gain)" in markdown
    lines = (tmp_path / "board" / "robustness.csv").read_text().splitlines()
    assert lines[0].startswith("model,attack,metric,before,after,gain,target,recovery")
    assert len(lines) - 1 == len(audited["report"].rows)
    # the control's runs are neither ranked nor rows of their own
    assert not any("(control)" in r.label for r in ranked)
    page = (tmp_path / "board" / "leaderboard.html").read_text()
    assert "<svg" in page.split("<h2>Robustness (lm-unlearn audit)</h2>", 1)[1]  # its plot


def test_a_target_run_gives_its_scores_on_the_rows_wanted(audited):
    """--target as a scoring run: its own metrics when it scored exactly the rows wanted,
    aggregated over the rows wanted when they are a part of its rows, nothing when it lacks
    some."""
    from harness_ext.workflows.audit_scores import target_from_run
    from harness_ext.workflows.audit_settings import AuditSettings
    from harness_ext.workflows.score_inputs import ScoreSettings

    runs = audited["runs"]
    _, manifest = _attacked(runs, "relearn")
    target_run = runs / manifest["attack"]["target"]["run"]  # the memorised model, rows 4-7
    settings = AuditSettings(model="unused", scoring=ScoreSettings(metadata=dict(FAST)))
    rows_4_to_7 = {**FAST, "forget_rows": "4:40"}
    exact = target_from_run(target_run, settings, rows_4_to_7)
    assert exact.metrics == manifest["attack"]["target"]["metrics"] and not exact.note
    two_rows = {**rows_4_to_7, "max_rows_per_set": {**SCORED, "forget": 2}}
    part = target_from_run(target_run, settings, two_rows)
    samples = {row: s for (_, row, _), s in forget_samples(target_run).items()}
    expected = (samples[4]["forget_prob"] + samples[5]["forget_prob"]) / 2
    assert part.metrics["forget_prob"] == pytest.approx(expected)
    assert part.note.endswith("aggregated from this run's per-row numbers")
    assert set(part.rows) == {("forget", 4), ("forget", 5)}
    elsewhere = target_from_run(target_run, settings, dict(FAST))  # rows 0-3: not in the run
    assert elsewhere.metrics == {} and "did not score" in elsewhere.note


def forget_samples(run_dir: Path) -> dict:
    from harness_ext.workflows.audit_scores import forget_samples as read
    from harness_ext.workflows.audit_settings import AuditSettings

    (results_file,) = run_dir.rglob("results_*.json")
    return read(results_file, AuditSettings(model="unused"))  # scoring forget01


def test_relearning_a_lora_adapter_saves_an_adapter_on_the_unlearned_model(models, tmp_path):
    from harness_ext.workflows.audit_attacks import plan, relearned_model
    from harness_ext.workflows.audit_settings import AuditSettings, RelearnSettings
    from harness_ext.workflows.score_inputs import ScoreSettings, resolve_model

    relearn = RelearnSettings(rows=RELEARN_ROWS, steps=2, learning_rate=1e-3, lora=True,
                              max_length=128)  # fmt: skip
    settings = AuditSettings(model=str(models["unlearned"]), attacks=("relearn",),
                             scoring=ScoreSettings(prompt_format="plain", metadata=dict(FAST)),
                             models_dir=tmp_path, relearn=relearn)  # fmt: skip
    (variant,) = plan(settings)
    assert variant.settings["weights"].startswith("LoRA")
    folder = relearned_model(settings, resolve_model(settings.model), variant)
    config = json.loads((folder / "adapter_config.json").read_text())
    assert Path(config["base_model_name_or_path"]).resolve() == models["unlearned"].resolve()
    assert (folder / "attack_card.json").is_file()
    assert resolve_model(str(folder)).peft == str(folder)  # scored as an adapter on its base


def test_before_scores_come_from_the_models_ordinary_run_as_a_run_of_those_rows_gives_them(
    audited, models, tiny_model_dir
):
    """The audit reads the unlearned model's "before" from its ordinary scoring run when one
    exists: aggregated from that run's per-row numbers, a part of its rows gives what a run of
    that part alone gives (means, and forget quality against a retain reference)."""
    from dataclasses import replace

    from harness_ext.workflows.audit_scores import scores_from_run, usual_run
    from harness_ext.workflows.audit_settings import AuditSettings
    from harness_ext.workflows.score import score_model
    from harness_ext.workflows.score_inputs import ScoreSettings

    runs = audited["root"] / "ordinary-runs"
    scoring = ScoreSettings(prompt_format="plain", metadata=dict(FAST), batch_size="8",
                            device="cpu", output=runs)  # fmt: skip
    # the untrained tiny model never saw the forget rows: a retain reference
    reference = score_model(str(tiny_model_dir), replace(scoring, output=runs / "reference"))
    scoring = replace(scoring, retain_reference=str(reference.run_dir))
    settings = AuditSettings(model=str(models["unlearned"]), scoring=scoring)
    assert usual_run(settings, settings.model) is None
    ordinary = score_model(settings.model, scoring).run_dir
    assert usual_run(settings, settings.model) == ordinary
    for part in ({"sets": ["forget"]}, {"sets": ["forget"], "forget_rows": "1:3"}):
        metadata = {**FAST, **part}
        alone = score_model(settings.model, replace(scoring, metadata=metadata, label="part"))
        derived = scores_from_run(ordinary, settings, metadata)
        scored = forget_metrics(
            json.loads(next(alone.run_dir.rglob("results_*.json")).read_text())["results"][
                "tofu_forget01_unlearn"
            ]
        )
        scored = {k.split(",")[0]: v for k, v in scored.items()}
        assert set(derived.metrics) <= set(scored)
        assert isinstance(derived.metrics["forget_quality"], float)
        for name, value in derived.metrics.items():
            if isinstance(value, float):
                assert value == pytest.approx(scored[name], rel=1e-6, abs=1e-9), name
            else:
                assert value == scored[name], name
        assert len(derived.rows) == (4 if "forget_rows" not in part else 2)
    # rows the ordinary run did not score: no numbers made up
    assert scores_from_run(ordinary, settings, {**FAST, "forget_rows": "30:40"}) is None
