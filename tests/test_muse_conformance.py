"""``muse_news_unlearn`` gives open-unlearning's MUSE numbers on the conformance kit, row by row,
through ``hf-unlearn`` and lm-eval's ``hf``.

`../shared/conformance/muse/` holds open-unlearning's (OU) default MUSE evaluation of a tiny
target model (memorised forget and retain text) and of its retain model (never saw the forget
text), per row, plus its other attacks. The task runs on the kit's local copy of MUSE-News:
the retain model first (privleak against OU's fixed 0.5, as OU's default), then the target with
the retain model's run as its reference (OU's ``retain_logs_path`` run). Generations and ROUGE-L
F1 must be equal; extraction strength equal; per-row attack scores, AUCs and privleak within
1e-4.
"""

import json
from pathlib import Path

import pytest

from harness_ext.lm_eval_plugin.run import run_tasks
from harness_ext.metrics.muse import KNOWMEM_STOP_WORDS

KIT = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "muse"
DATA = KIT / "data" / "muse-bench" / "MUSE-News"
TASK = "muse_news_unlearn"
TOLERANCE = 1e-4
ROUGE = {  # OU's metric -> our set
    "forget_knowmem_ROUGE": "forget_knowmem",
    "retain_knowmem_ROUGE": "retain_knowmem",
    "forget_verbmem_ROUGE": "forget_verbmem",
}
ATTACKS = {  # OU's attack -> our per-row key
    "mia_min_k": "mia_min_k_auc",
    "mia_loss": "mia_loss_auc",
    "mia_zlib": "mia_zlib_auc",
    "mia_min_k_plus_plus": "mia_min_k_plus_plus_auc",
}
# the forget text whose "ø" the kit's tokenizer splits into two byte tokens: no string ends
# between them, so lm-eval's hf backend, asked per token, gives their sum only (each gets half)
SPLIT_CHARACTER_ROWS = {("forget", 9)}
MODELS = {"target": "tiny-muse-llama", "retain": "tiny-muse-llama-retain"}
OU_RUNS = {"target": "ou_muse_news", "retain": "ou_muse_news_retain"}


def ou_rows(run: str) -> list[dict]:
    rows = [json.loads(line) for line in (KIT / run / "rows.jsonl").read_text().splitlines()]
    rows += [
        json.loads(line) for line in (KIT / f"{run}_mia" / "rows.jsonl").read_text().splitlines()
    ]
    return rows


def ou_summary(run: str) -> dict:
    return json.loads((KIT / run / "MUSE_SUMMARY.json").read_text())


def _score(model: str, backend: str, folder: Path | None = None, **metadata) -> dict:
    from lm_eval.loggers import EvaluationTracker

    if not (KIT / model / "model.safetensors").is_file():
        pytest.fail(f"the MUSE conformance kit is missing at {KIT}")
    tracker = EvaluationTracker(output_path=str(folder)) if folder else None
    results = run_tasks(
        {"pretrained": str(KIT / model), "dtype": "float32"},
        [TASK],
        backend=backend,
        metadata={"data_dir": str(DATA), **metadata},
        batch_size=8,
        device="cpu",
        evaluation_tracker=tracker,
    )
    if tracker:
        tracker.save_results_aggregated(results=results, samples=results["samples"])
        tracker.save_results_samples(task_name=TASK, samples=results["samples"][TASK])
    return results


@pytest.fixture(scope="module", params=["hf-unlearn", "hf"])
def runs(request, tmp_path_factory):
    """The retain model (privleak against OU's fixed 0.5), then the target against the retain
    model's run."""
    backend = request.param
    folder = tmp_path_factory.mktemp(f"muse-retain-{backend}")
    retain = _score(MODELS["retain"], backend, folder, privleak_reference_auc=0.5)
    target = _score(MODELS["target"], backend, retain_reference=str(folder))
    return backend, {"retain": retain, "target": target}


def _samples(results: dict) -> dict[tuple[str, int], dict]:
    return {(s["doc"]["set"], s["doc"]["row"]): s for s in results["samples"][TASK]}


def _metrics(results: dict) -> dict:
    return {k.split(",")[0]: v for k, v in results["results"][TASK].items() if "," in k}


@pytest.mark.parametrize("model", ["target", "retain"])
def test_generations_and_rouge_equal_open_unlearnings(runs, model):
    from transformers import AutoTokenizer

    from tofu_tasks.muse.documents import as_open_unlearning_reads

    backend, results = runs
    tokenizer = AutoTokenizer.from_pretrained(KIT / MODELS[model])
    samples = _samples(results[model])
    checked = 0
    for ou in ou_rows(OU_RUNS[model]):
        if ou["metric"] not in ROUGE:
            continue
        set_name = ROUGE[ou["metric"]]
        sample = samples[(set_name, int(ou["index"]))]
        where = f"{backend} {model} {set_name} row {ou['index']}"
        stops = KNOWMEM_STOP_WORDS if "knowmem" in set_name else ()
        generation = as_open_unlearning_reads(tokenizer, sample["filtered_resps"][0], stops)
        assert generation == ou["generation"], where
        assert sample[f"{set_name}_rougeL_f1"] == ou["rougeL_f1"], where
        checked += 1
    assert checked == 50
    metrics = _metrics(results[model])
    summary = ou_summary(OU_RUNS[model])
    for ou_metric, set_name in ROUGE.items():
        assert metrics[f"{set_name}_rougeL_f1"] == pytest.approx(summary[ou_metric], abs=1e-12)


@pytest.mark.parametrize("model", ["target", "retain"])
def test_memorisation_and_attack_scores_equal_open_unlearnings(runs, model):
    backend, results = runs
    samples = _samples(results[model])
    checked = 0
    for ou in ou_rows(OU_RUNS[model]):
        index = int(ou["index"])
        if ou["metric"] == "extraction_strength":
            assert samples[("forget_verbmem", index)]["forget_extraction_strength"] == (
                pytest.approx(ou["score"], abs=1e-12)
            ), (backend, model, index)
        elif ou["metric"] == "exact_memorization":
            value = samples[("forget_verbmem", index)]["forget_exact_memorization"]
            assert value == pytest.approx(ou["score"], abs=1e-6), (backend, model, index)
        elif ou["metric"] in ATTACKS:
            score = samples[(ou["mia_split"], index)][ATTACKS[ou["metric"]]]["score"]
            where = f"{backend} {model} {ou['metric']} {ou['mia_split']} row {index}"
            if ou["metric"] == "mia_min_k_plus_plus" and backend == "hf":
                assert "next-token distribution" in score, where  # hf returns sums only
            elif (
                backend == "hf"
                and ou["metric"] == "mia_min_k"
                and ((ou["mia_split"], index) in SPLIT_CHARACTER_ROWS)
            ):
                assert score == pytest.approx(ou["score"], rel=0.01), where
            else:
                assert score == pytest.approx(ou["score"], rel=TOLERANCE, abs=TOLERANCE), where
        else:
            continue
        checked += 1
    assert checked == 10 + 10 + 4 * 20 + 20  # ES, EM, the attacks (min-k in both files)
    metrics = _metrics(results[model])
    summary = ou_summary(f"{OU_RUNS[model]}_mia")
    for attack, key in ATTACKS.items():
        if attack == "mia_min_k_plus_plus" and backend == "hf":
            continue
        assert metrics[key] == pytest.approx(summary[attack], abs=TOLERANCE), (backend, key)
    if backend == "hf":
        record = results[model]["configs"][TASK]["metadata"]["tofu"]["token_scores"]
        assert record["shared_characters"] >= 2  # reported, with what it means
    es = ou_summary(OU_RUNS[model])["extraction_strength"]
    assert metrics["forget_extraction_strength"] == pytest.approx(es, abs=1e-12)


def test_privleak_against_the_fixed_and_the_retain_models_auc(runs):
    """OU's default compares with a fixed AUC of 0.5 (the retain model's set); against the retain
    model's own run the target's privleak is OU's reflogs value."""
    backend, results = runs
    retain, target = _metrics(results["retain"]), _metrics(results["target"])
    assert retain["privleak"] == pytest.approx(
        ou_summary("ou_muse_news_retain")["privleak"], abs=TOLERANCE
    )
    reflogs = ou_summary("ou_muse_news_reflogs")["privleak"]
    assert target["privleak"] == pytest.approx(reflogs, abs=TOLERANCE)
    record = results["target"]["configs"][TASK]["metadata"]["tofu"]
    assert record["retain_values"]["mia_min_k_auc"] == 0.55
    assert record["metric_ideals"]["privleak"] == "best: 0, the retain model's value"
    assert record["holdout"]["privleak_reference_auc"] is None
    assert (
        results["retain"]["configs"][TASK]["metadata"]["tofu"]["holdout"]["privleak_reference_auc"]
        == 0.5
    )
    # the retain model scored against itself: its reference attack cannot separate anything
    assert isinstance(target["mia_reference_auc"], float)


def test_without_a_reference_privleak_says_how_to_get_one():
    results = _score(MODELS["target"], "hf-unlearn", sets=["forget", "holdout"], max_rows_per_set=3)
    metrics = _metrics(results)
    assert metrics["privleak"].startswith("N/A") and "retain_reference" in metrics["privleak"]
    assert metrics["mia_min_k_auc"] == 1.0
    assert metrics["forget_verbmem_rougeL_f1"].startswith("N/A (no rows")
    assert {s["doc"]["set"] for s in results["samples"][TASK]} == {"forget", "holdout"}
