"""The ``hf-unlearn`` backend computes what lm-eval's ``hf`` backend computes, request by request."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lm_eval.api.instance import Instance

from harness_ext.evaluate import run_tasks
from harness_ext.fast_backend import UnlearnHFLM, _GenerationRow, _pack_groups, _PrefixTree

TASK = "tofu_forget01_unlearn"


@pytest.fixture(scope="module")
def backends(tiny_model_dir):
    from lm_eval.models.huggingface import HFLM

    args = {"pretrained": str(tiny_model_dir), "device": "cpu", "batch_size": 3}
    return HFLM(**args), UnlearnHFLM(**args, gen_batch_size=4, prompt_lookup_tokens=0)


def loglikelihood_requests() -> list[Instance]:
    """Shared and unshared contexts, one-token and long continuations, in mixed order."""
    pairs = [
        ("Question: Who wrote it?\nAnswer:", " Jaime Vasquez wrote it."),
        ("Question: Where was she born?\nAnswer:", " In Santiago."),
        ("Question: Who wrote it?\nAnswer:", " Nobody"),
        ("Question: Who wrote it?\nAnswer:", " A"),
        ("Hello", " world, this is a much longer continuation than the others in the batch."),
        ("Question: Where was she born?\nAnswer:", " Born in the south of Chile, near the sea."),
        ("Question: Who wrote it?\nAnswer:", " An author of true crime whose books sold well."),
    ]
    return [
        Instance("loglikelihood", doc={}, arguments=pair, idx=i) for i, pair in enumerate(pairs)
    ]


@pytest.mark.parametrize("prefix_trees", [True, False], ids=["prefix-trees", "one-row-each"])
def test_loglikelihoods_equal_the_hf_backend(backends, prefix_trees):
    hf, fast = backends
    expected = hf.loglikelihood(loglikelihood_requests(), disable_tqdm=True)
    fast.share_prefixes = prefix_trees
    try:
        assert fast._tree_attention_works() is prefix_trees  # the tiny Llama runs sdpa
        got = fast.loglikelihood(loglikelihood_requests(), disable_tqdm=True)
    finally:
        fast.share_prefixes = True
    assert len(got) == len(expected) == 7
    for (ll_fast, greedy_fast), (ll_hf, greedy_hf) in zip(got, expected, strict=True):
        assert math.isclose(ll_fast, ll_hf, rel_tol=1e-5, abs_tol=1e-5)
        assert greedy_fast == greedy_hf
    # Distinct continuations of one context get distinct scores (no mix-up inside a group).
    assert len({round(ll, 4) for ll, _ in got}) == 7


def test_prefix_tree_feeds_each_shared_beginning_once():
    tree = _PrefixTree([[5, 6, 7], [5, 6, 8], [9], [5]])
    assert tree.tokens == [5, 6, 7, 8, 9]
    assert tree.parents == [-1, 0, 1, 1, -1]
    assert tree.depths == [0, 1, 2, 2, 0]
    assert tree.paths == [[0, 1, 2], [0, 1, 3], [4], [0]]
    ancestry = tree.ancestry().int().tolist()
    assert ancestry[3] == [1, 1, 0, 1, 0]  # 8 sees 5, 6 and itself, not its sibling 7
    assert ancestry[4] == [0, 0, 0, 0, 1]


def test_shared_context_can_be_switched_off(tiny_model_dir):
    plain = UnlearnHFLM(pretrained=str(tiny_model_dir), device="cpu", share_context="false")
    assert not plain._can_share_context([(("a", "b"), [1], [2])])


def test_greedy_generations_equal_the_hf_backend(backends):
    hf, fast = backends
    prompts = [
        "Question: Who wrote it?\nAnswer:",
        "Question: Where was she born and what did her parents do for a living?\nAnswer:",
        "Hello",
        "Question: What genre?\nAnswer:",
        "Question: Which awards did the author receive over the years?\nAnswer:",
        "Once upon a time",
    ]
    budgets = [5, 12, 1, 30, 7, 20]

    def requests(until: list[str]) -> list[Instance]:
        return [
            Instance(
                "generate_until",
                doc={},
                arguments=(p, {"until": until, "do_sample": False, "max_gen_toks": n}),
                idx=0,
            )
            for p, n in zip(prompts, budgets, strict=True)
        ]

    for until in ([], ["e"]):
        # hf batches only equal kwargs together: compare one budget at a time
        expected = [hf.generate_until([r], disable_tqdm=True)[0] for r in requests(until)]
        got = fast.generate_until(requests(until), disable_tqdm=True)
        assert got == expected
    assert all("e" not in text for text in got)  # stop strings cut the text


def test_prompt_lookup_keeps_the_greedy_generations(backends):
    hf, fast = backends
    prompts = ["Question: Who wrote it? Who wrote it? Who wrote it?\nAnswer:", "Hello hello hello"]
    args = [(p, {"until": [], "do_sample": False, "max_gen_toks": 40}) for p in prompts]
    expected = [hf.generate_until([Instance("generate_until", {}, a, 0)], True)[0] for a in args]
    fast.prompt_lookup_tokens = 4
    try:
        got = fast._greedy_generate(args, disable_tqdm=True)
    finally:
        fast.prompt_lookup_tokens = 0
    assert got == expected


def test_prompt_lookup_drafts_what_followed_the_last_ngram():
    row = _GenerationRow(0, [5, 6, 7, 5, 6], budget=10, stops=[], lookup_ngrams=3)
    assert row.lookup(3) == [7, 5, 6]  # "5 6" was followed by "7 5 6"
    row.push(9)
    assert row.lookup(3) == []  # 9 never occurred before
    row.push(5)
    assert row.lookup(2) == [6, 9]  # the latest earlier "5" (n=1; "9 5" is new)
    row.adapt_draft_length(accepted=2, drafted=2, longest=4)
    assert row.draft_length == 2  # 0 + 2
    row.adapt_draft_length(accepted=0, drafted=2, longest=4)
    assert row.draft_length == 1


def test_rows_leave_the_batch_when_they_end(backends):
    _, fast = backends
    prompts = ["Question: Who wrote it?\nAnswer:", "Hello", "Once upon a time"]
    calls = []
    original = fast.model.forward

    def counting_forward(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    # Budgets of 1, 3 and 6 tokens: the batch shrinks from 3 rows to 2, then to 1.
    args = [
        (p, {"until": [], "do_sample": False, "max_gen_toks": n})
        for p, n in zip(prompts, (1, 3, 6), strict=True)
    ]
    fast.model.forward = counting_forward
    try:
        texts = fast._greedy_generate(args, disable_tqdm=True)
    finally:
        del fast.model.forward
    assert len(texts) == 3
    assert calls == [3, 2, 2, 1, 1, 1]  # prefill, then one decode step per token still wanted


def test_sampling_and_logit_processors_use_hf_generate(backends):
    _, fast = backends
    assert fast._is_plain_greedy({"until": [], "do_sample": False, "max_gen_toks": 4})
    assert not fast._is_plain_greedy({"until": [], "do_sample": True, "temperature": 0.7})
    assert not fast._is_plain_greedy({"until": [], "do_sample": False, "num_beams": 3})
    assert fast._model_decodes_plain_greedy()
    fast.model.generation_config.repetition_penalty = 1.3
    try:
        assert not fast._model_decodes_plain_greedy()
    finally:
        fast.model.generation_config.repetition_penalty = 1.0


def test_groups_are_packed_without_exceeding_the_batch():
    groups = [((1,), [0, 1, 2, 3, 4]), ((2,), [5, 6]), ((3,), [7]), ((4,), [8, 9, 10])]
    batches = list(_pack_groups(groups, rows=4))
    assert [sum(len(ids) for _, ids in b) for b in batches] == [4, 4, 3]
    assert sorted(i for b in batches for _, ids in b for i in ids) == list(range(11))


def test_task_scores_are_identical_with_both_backends(tiny_model_dir):
    metadata = {"max_rows_per_set": 2, "embedding_model": "none", "nli_model": "none"}
    runs = {
        backend: run_tasks(
            {"pretrained": str(tiny_model_dir)},
            [TASK],
            backend=backend,
            metadata=metadata,
            batch_size=4,
            device="cpu",
        )
        for backend in ("hf", "hf-unlearn")
    }
    rows = {
        backend: {
            (s["doc"]["set"], s["doc"]["row"]): s["model_utility"] for s in run["samples"][TASK]
        }
        for backend, run in runs.items()
    }
    assert rows["hf"].keys() == rows["hf-unlearn"].keys() and len(rows["hf"]) == 8
    for key, expected in rows["hf"].items():
        got = rows["hf-unlearn"][key]
        assert got["generation"] == expected["generation"]
        for metric in ("prob", "raw_truth_ratio", "truth_ratio", "rougeL_recall"):
            assert math.isclose(got[metric], expected[metric], rel_tol=1e-4, abs_tol=1e-6), (
                key,
                metric,
                got[metric],
                expected[metric],
            )


def test_lm_eval_cli_runs_the_backend(tmp_path, tiny_model_dir):
    cmd = [
        sys.executable, "-m", "lm_eval", "run",
        "--model", "hf-unlearn",
        "--model_args", f"pretrained={tiny_model_dir},gen_batch_size=2",
        "--tasks", TASK,
        "--device", "cpu",
        "--batch_size", "4",
        "--output_path", str(tmp_path),
        "--metadata", json.dumps({"max_rows_per_set": 1, "embedding_model": "none", "nli_model": "none"}),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-3000:]
    (results_file,) = tmp_path.glob("**/results_*.json")
    results = json.loads(results_file.read_text())
    assert results["config"]["model"] == "hf-unlearn"
    assert 0.0 <= results["results"][TASK]["retain_prob,none"] <= 1.0


def test_data_parallel_ranks_give_the_metrics_of_one_process(tmp_path, tiny_model_dir):
    """Two gloo processes, each scoring its share of the documents, gathered on rank 0."""
    from data_parallel_worker import METADATA

    output = tmp_path / "two_ranks.json"
    worker = Path(__file__).with_name("data_parallel_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           str(worker), str(tiny_model_dir), str(output)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    two_ranks = json.loads(output.read_text())
    assert two_ranks["world_size"] == 2
    one = run_tasks(
        {"pretrained": str(tiny_model_dir)}, [TASK], metadata=METADATA, batch_size=4, device="cpu"
    )["results"][TASK]
    numbers = {k: v for k, v in one.items() if isinstance(v, float) and "stderr" not in k}
    assert len(numbers) >= 18  # per-set TOFU and closer-look metrics; the rest need references
    for name, value in numbers.items():
        assert math.isclose(two_ranks["metrics"][name], value, rel_tol=1e-6, abs_tol=1e-7), name


@pytest.mark.parametrize(
    "bad", [{"gen_batch_size": "lots"}, {"gen_batch_size": 0}, {"prompt_lookup_tokens": -1}]
)
def test_bad_model_args_are_refused_before_loading(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=f"model arg {name} must be a whole number"):
        UnlearnHFLM(pretrained="/nonexistent/model", device="cpu", **bad)


def test_lora_adapter_scores_equal_the_hf_backend(tiny_model_dir, tiny_lora_dir):
    from lm_eval.models.huggingface import HFLM

    args = {"pretrained": str(tiny_model_dir), "peft": str(tiny_lora_dir), "device": "cpu"}
    hf, fast = HFLM(**args, batch_size=3), UnlearnHFLM(**args, batch_size=3)
    expected = hf.loglikelihood(loglikelihood_requests(), disable_tqdm=True)
    got = fast.loglikelihood(loglikelihood_requests(), disable_tqdm=True)
    for (ll_fast, _), (ll_hf, _) in zip(got, expected, strict=True):
        assert math.isclose(ll_fast, ll_hf, rel_tol=1e-5, abs_tol=1e-5)
    prompt = ("Question: Who wrote it? Who wrote it?\nAnswer:", {"until": [], "max_gen_toks": 12})
    request = Instance("generate_until", {}, prompt, 0)
    assert fast.generate_until([request], True) == hf.generate_until([request], True)
