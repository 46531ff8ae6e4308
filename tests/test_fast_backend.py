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

from harness_ext.lm_eval_plugin.backend import UnlearnHFLM
from harness_ext.lm_eval_plugin.greedy_decoding import GenerationRow
from harness_ext.lm_eval_plugin.run import run_tasks
from harness_ext.lm_eval_plugin.shared_context import PrefixTree, attention_scheme, pack_groups

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
    tree = PrefixTree([[5, 6, 7], [5, 6, 8], [9], [5]])
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
    row = GenerationRow(0, [5, 6, 7, 5, 6], budget=10, stops=[], lookup_ngrams=3)
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
    batches = list(pack_groups(groups, rows=4))
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


# ---------------------------------------------------------------- other attention schemes
WINDOW = 8  # sliding window of the tiny Mistral and Qwen2: shorter than every prompt below
LONG_CONTEXTS = [
    "Question: Who wrote the novel about the lighthouse keeper and her brother?\nAnswer:",
    "Question: Where was the author born, and what did her parents do?\nAnswer:",
]
LONG_PAIRS = [
    (LONG_CONTEXTS[0], " Jaime Vasquez wrote it."),
    (LONG_CONTEXTS[1], " In Santiago."),
    (LONG_CONTEXTS[0], " Nobody"),
    (LONG_CONTEXTS[0], " A"),
    (LONG_CONTEXTS[1], " Born in the south of Chile, near the sea, to a fisherman and a teacher."),
    (LONG_CONTEXTS[0], " An author of true crime whose books sold well."),
]
GREEDY_PROMPTS = [
    (LONG_CONTEXTS[0], 24),
    ("Question: Who wrote it? Who wrote it? Who wrote it?\nAnswer:", 20),
    ("Hello hello hello hello hello hello hello hello", 12),
]


def tiny_config(kind: str, tokenizer):
    """Tiny configs of other attention schemes, shaped like the tiny Llama."""
    from transformers import BloomConfig, FalconConfig, MistralConfig, Qwen2Config

    ids = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    shape = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    llama_like = {
        **ids,
        **shape,
        "intermediate_size": 128,
        "num_key_value_heads": 4,
        "max_position_embeddings": 512,
        "tie_word_embeddings": True,
    }
    if kind == "mistral-window-8":
        return MistralConfig(**llama_like, sliding_window=WINDOW)
    if kind == "qwen2-window-8":  # layer 0 full attention, layer 1 a sliding window (hybrid cache)
        return Qwen2Config(
            **llama_like, use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1
        )
    if kind == "mistral-window-512":  # a window as long as the model's context
        return MistralConfig(**llama_like, sliding_window=512)
    if kind == "falcon-alibi":
        return FalconConfig(**ids, **shape, alibi=True, max_position_embeddings=512)
    if kind == "bloom":
        return BloomConfig(**ids, hidden_size=64, n_layer=2, n_head=4)
    raise ValueError(kind)


@pytest.fixture(scope="module")
def scheme_backends(request, tmp_path_factory, tiny_tokenizer):
    """(hf, hf-unlearn) on a tiny random model of the attention scheme named by the param."""
    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM

    kind = request.param
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(kind, tiny_tokenizer))
    model.generation_config.pad_token_id = tiny_tokenizer.pad_token_id
    out = tmp_path_factory.mktemp(kind)
    model.save_pretrained(out)
    tiny_tokenizer.save_pretrained(out)
    args = {"pretrained": str(out), "device": "cpu", "batch_size": 3}
    return HFLM(**args), UnlearnHFLM(**args, gen_batch_size=4, prompt_lookup_tokens=3)


def spy_on_scoring(fast, monkeypatch) -> dict[str, int]:
    """Counts of the continuation-scoring paths the backend takes."""
    calls = {"trees": 0, "rows": 0}
    for name, key in (("_score_as_trees", "trees"), ("_score_as_rows", "rows")):
        original = getattr(fast, name)

        def counted(*args, _original=original, _key=key, **kwargs):
            calls[_key] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(fast, name, counted)
    return calls


def spy_on_decoding(fast, monkeypatch) -> list[int]:
    """Widths of the inputs of every forward pass (the prefill first)."""
    widths = []
    original = fast.model.forward

    def counted(*args, **kwargs):
        widths.append(kwargs["input_ids"].shape[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(fast.model, "forward", counted)
    return widths


def assert_loglikelihoods_match(hf, fast, pairs, rel_tol=1e-5, abs_tol=1e-5):
    requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    expected = hf.loglikelihood(requests, disable_tqdm=True)
    got = fast.loglikelihood(requests, disable_tqdm=True)
    for (ll_fast, greedy_fast), (ll_hf, greedy_hf) in zip(got, expected, strict=True):
        assert math.isclose(ll_fast, ll_hf, rel_tol=rel_tol, abs_tol=abs_tol), (ll_fast, ll_hf)
        assert greedy_fast == greedy_hf
    return got, expected


def greedy_texts(lm, prompts, one_by_one: bool) -> list[str]:
    requests = [
        Instance("generate_until", {}, (p, {"until": [], "do_sample": False, "max_gen_toks": n}), 0)
        for p, n in prompts
    ]
    if one_by_one:  # hf batches only equal kwargs together
        return [lm.generate_until([r], disable_tqdm=True)[0] for r in requests]
    return lm.generate_until(requests, disable_tqdm=True)


@pytest.mark.parametrize(
    "scheme_backends", ["mistral-window-8", "qwen2-window-8", "falcon-alibi"], indirect=True
)
def test_sliding_window_and_alibi_models_score_one_row_each(scheme_backends, monkeypatch):
    """A custom tree mask would replace the window (and the sliding cache keeps only WINDOW - 1
    keys: trees fail with a shape error) or ALiBi's biases, which Falcon builds from a 2D mask.
    One row per continuation on the shared context lets the model build its own masks; measured
    against hf in float32: max |difference| 2.2e-5 on sums of -7 to -207 (relative 1.1e-7), so
    the tolerance is the suite's: 1e-5 relative (or absolute for small sums)."""
    hf, fast = scheme_backends
    tokens = [len(fast.tok_encode(context)) for context in LONG_CONTEXTS]
    assert min(tokens) > 3 * WINDOW  # every context runs far past the window
    assert fast.model.config._attn_implementation == "sdpa"  # not why trees are refused
    assert not fast._tree_attention_works()
    assert fast._can_share_context([(("a", "b"), [1, 2], [3, 4])])
    calls = spy_on_scoring(fast, monkeypatch)
    got, _ = assert_loglikelihoods_match(hf, fast, LONG_PAIRS)
    assert calls["trees"] == 0 and calls["rows"] > 0
    assert len({round(ll, 4) for ll, _ in got}) == len(LONG_PAIRS)


@pytest.mark.parametrize(
    "scheme_backends", ["mistral-window-8", "qwen2-window-8", "falcon-alibi"], indirect=True
)
def test_sliding_window_and_alibi_models_decode_as_hf_does(scheme_backends, monkeypatch):
    """Batched, left-padded decoding on the cache gives hf's tokens past the window. Rejected
    prompt-lookup drafts would leave masked holes in the cache, which a window counts (with
    drafts forced to be rejected, the tiny Mistral's outputs differed from hf's): sliding-window
    models decode without drafts unless all of a batch fits inside the window."""
    hf, fast = scheme_backends
    expected = greedy_texts(hf, GREEDY_PROMPTS, one_by_one=True)
    widths = spy_on_decoding(fast, monkeypatch)
    assert greedy_texts(fast, GREEDY_PROMPTS, one_by_one=False) == expected
    windowed = fast._attention().window is not None
    assert fast._draft_tokens(10, 10) == (0 if windowed else 3)
    if windowed:
        assert set(widths[1:]) == {1}  # one token per row and pass: no drafts, no holes
    else:  # ALiBi positions count unmasked tokens only: holes of rejected drafts change nothing
        rejected = [7, 7]  # a token these outputs never choose: every draft leaves two holes
        monkeypatch.setattr(fast, "_draft", lambda row: rejected if row.budget > 4 else [])
        assert greedy_texts(fast, GREEDY_PROMPTS, one_by_one=False) == expected


@pytest.mark.parametrize("scheme_backends", ["mistral-window-512"], indirect=True)
def test_a_window_no_request_reaches_keeps_prefix_trees_and_drafts(scheme_backends, monkeypatch):
    hf, fast = scheme_backends
    assert not fast._tree_attention_works()  # without knowing the requests' lengths
    assert fast._tree_attention_works(511) and not fast._tree_attention_works(512)
    calls = spy_on_scoring(fast, monkeypatch)
    assert_loglikelihoods_match(hf, fast, LONG_PAIRS)
    assert calls["trees"] > 0 and calls["rows"] == 0
    assert fast._draft_tokens(30, 24) == 3 and fast._draft_tokens(200, 100) == 0
    assert greedy_texts(fast, GREEDY_PROMPTS, False) == greedy_texts(hf, GREEDY_PROMPTS, True)


@pytest.mark.parametrize("scheme_backends", ["bloom"], indirect=True)
def test_bloom_alibi_goes_through_hf_code(scheme_backends):
    """Bloom (ALiBi) has no position_ids: both request kinds run hf's own code."""
    hf, fast = scheme_backends
    assert fast._attention().alibi and not fast._tree_attention_works()
    assert not fast._can_share_context([(("a", "b"), [1, 2], [3, 4])])
    assert not fast._model_decodes_plain_greedy()
    assert_loglikelihoods_match(hf, fast, LONG_PAIRS[:3], rel_tol=0, abs_tol=0)


def test_attention_schemes_are_read_from_configs():
    from transformers import (
        FalconConfig,
        Gemma2Config,
        LlamaConfig,
        MptConfig,
        PretrainedConfig,
        Qwen2Config,
    )

    plain = attention_scheme(LlamaConfig())
    assert (plain.window, plain.alibi, plain.known) == (None, False, True)
    assert attention_scheme(FalconConfig(alibi=True)).alibi
    assert not attention_scheme(FalconConfig()).alibi
    assert attention_scheme(MptConfig()).alibi  # attn_config.alibi
    assert attention_scheme(Qwen2Config(use_sliding_window=False)).window is None
    assert attention_scheme(Gemma2Config(sliding_window=16)).window == 16  # layer_types
    hybrid = PretrainedConfig(layer_types=["full_attention", "linear_attention"])
    assert not attention_scheme(hybrid).known
    assert not attention_scheme(PretrainedConfig(attention_chunk_size=8)).known


# ---------------------------------------------------------------- bfloat16 on CPU
@pytest.fixture(scope="module")
def bf16_backends(tiny_model_dir):
    from lm_eval.models.huggingface import HFLM

    args = {
        "pretrained": str(tiny_model_dir),
        "device": "cpu",
        "batch_size": 3,
        "dtype": "bfloat16",
    }
    return HFLM(**args), UnlearnHFLM(**args, gen_batch_size=4, prompt_lookup_tokens=3)


@pytest.mark.parametrize("prefix_trees", [True, False], ids=["prefix-trees", "one-row-each"])
def test_bfloat16_loglikelihoods_equal_hf_within_rounding(bf16_backends, prefix_trees):
    """hf rounds each sum of bfloat16 log-probs to bfloat16 (a spacing of 1.0 between -128 and
    -256); this backend sums them in float64. Measured: at most 0.56 of a bfloat16 spacing of
    hf's number (0.28 at -188), so the tolerance is one spacing; with float32 log-softmax on both
    (softmax_dtype=float32) at most 4.0e-3 absolute (sums of -7 to -208), tolerance 2e-2."""
    import torch

    hf, fast = bf16_backends
    assert next(fast.model.parameters()).dtype == torch.bfloat16
    pairs = [instance.args for instance in loglikelihood_requests()] + LONG_PAIRS
    fast.share_prefixes = prefix_trees
    try:
        assert fast._tree_attention_works() is prefix_trees
        got, expected = assert_loglikelihoods_match(hf, fast, pairs, rel_tol=0, abs_tol=math.inf)
        for (ll_fast, _), (ll_hf, _) in zip(got, expected, strict=True):
            spacing = 2.0 ** (math.frexp(abs(ll_hf))[1] - 8)  # bfloat16: 8 significant bits
            assert abs(ll_fast - ll_hf) <= spacing, (ll_fast, ll_hf)
        hf.softmax_dtype = fast.softmax_dtype = torch.float32
        assert_loglikelihoods_match(hf, fast, pairs, rel_tol=0, abs_tol=2e-2)
    finally:
        fast.share_prefixes = True
        hf.softmax_dtype = fast.softmax_dtype = None


def test_bfloat16_greedy_generations_equal_hf(bf16_backends):
    """Identical tokens in bfloat16 too (measured on these prompts, drafts on; a tie in the last
    bit could in principle flip a choice, none does here)."""
    hf, fast = bf16_backends
    prompts = [*GREEDY_PROMPTS, ("Question: What genre?\nAnswer:", 30), ("Hello", 5)]
    assert greedy_texts(fast, prompts, one_by_one=False) == greedy_texts(hf, prompts, True)
