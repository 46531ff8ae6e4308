"""Unlearning on raw text (MUSE's setting): `lm-unlearn train` takes a text corpus as forget and
retain data, chunked to --max-length tokens. On the conformance kit's target model (it memorised
MUSE-News's forget and retain passages), GA+GD on the forget corpus takes the verbatim memory of
the forget passages down while the retain passages' holds; refusal-based methods refuse text."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness_ext.metrics.muse import VERBMEM_NEW_TOKENS, rouge_l_f1
from tests.test_muse_data import NEWS
from tofu_tasks.muse.data import read_split
from unlearn_methods.config import UnlearnConfig
from unlearn_methods.data import UnlearnDataError, load_unlearn_data
from unlearn_methods.evaluation_plan import eval_task
from unlearn_methods.train import dry_run, read_run_card, train

TARGET = NEWS.parents[2] / "tiny-muse-llama"


@pytest.fixture(autouse=True)
def muse_folder(monkeypatch):
    monkeypatch.setenv("MUSE_DATA_DIR", str(NEWS))


def continuation_pairs(rows: list[dict]) -> list[tuple[str, str]]:
    """A passage cut at the last space before 60% of its characters, as MUSE-News's verbmem
    rows are: (beginning, continuation)."""
    pairs = []
    for row in rows:
        cut = row["text"].rfind(" ", 0, int(0.6 * len(row["text"])))
        pairs.append((row["text"][:cut], row["text"][cut + 1 :]))
    return pairs


def verbatim_rouge(model_dir, pairs) -> float:
    """Mean ROUGE-L F1 of greedy continuations (MUSE's 128 new tokens) of the beginnings."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    scores = []
    for prompt, continuation in pairs:
        ids = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=VERBMEM_NEW_TOKENS, do_sample=False,
                                 pad_token_id=tokenizer.eos_token_id)  # fmt: skip
        new = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        scores.append(rouge_l_f1(new.strip(), continuation))
    return sum(scores) / len(scores)


def test_text_is_chunked_to_max_length_with_every_token_supervised():
    tokenizer = AutoTokenizer.from_pretrained(TARGET)
    data = load_unlearn_data("muse-news:forget", tokenizer=tokenizer, max_length=128)
    assert data.retain_split == "muse-news:retain1" and data.refusals == ()
    passages = read_split("news", "raw", "forget")
    expected = []
    for passage in passages:
        ids = tokenizer(passage["text"])["input_ids"] + [tokenizer.eos_token_id]
        expected += [ids[i : i + 128] for i in range(0, len(ids), 128)]
    assert [c["input_ids"] for c in data.forget] == expected
    assert all(len(c["input_ids"]) <= 128 for c in data.forget)
    assert len(data.forget) > len(passages)  # passages of 295-383 tokens: 3 chunks each


def test_refusal_methods_say_why_not(tmp_path):
    options = UnlearnConfig(method="IDK+AP", model=str(TARGET), output_dir=str(tmp_path / "x"),
                            forget="muse-news:forget", max_length=128)  # fmt: skip
    with pytest.raises(UnlearnDataError, match="a text corpus has none; on text, use GA"):
        dry_run(options)


def test_ga_gd_on_text_forgets_the_forget_passages_and_keeps_the_retain_ones(tmp_path):
    forget = [(r["prompt"], r["gt"]) for r in read_split("news", "verbmem", "forget")]
    retain = continuation_pairs(read_split("news", "raw", "retain1"))
    before = verbatim_rouge(TARGET, forget), verbatim_rouge(TARGET, retain)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = train(UnlearnConfig(
            method="GA+GD", model=str(TARGET), output_dir=str(tmp_path / "ga-gd"),
            forget="muse-news:forget", max_length=128, max_steps=13, learning_rate=1e-3,
            per_device_train_batch_size=4, effective_batch_size=4, warmup_steps=0, bf16=False,
            disable_tqdm=True,
        ))  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    after = verbatim_rouge(out, forget), verbatim_rouge(out, retain)
    print(f"verbatim ROUGE-L F1 forget {before[0]:.3f} -> {after[0]:.3f}, "
          f"retain {before[1]:.3f} -> {after[1]:.3f}")  # fmt: skip
    assert before[0] > 0.9 and before[1] > 0.9  # the target memorised both
    # Measured (torch 2.13, one thread): forget 0.971 -> 0.565, retain 0.971 -> 0.868; 11 and
    # 15 steps give 0.837 / 0.971 and 0.441 / 0.788. The forget passages fall by far more than
    # the retain ones, which stay well above what the model says of text it never saw.
    forget_drop, retain_drop = before[0] - after[0], before[1] - after[1]
    assert forget_drop > 2 * retain_drop + 0.1
    assert after[1] > 0.75


def test_evaluation_during_training_scores_the_muse_task_and_selects(tmp_path):
    """--eval-every on a MUSE corpus scores muse_news_unlearn on the model in memory; the first
    evaluation whose verbatim ROUGE-L F1 reaches the target is kept and training stops there."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = train(UnlearnConfig(
            method="GA+GD", model=str(TARGET), output_dir=str(tmp_path / "selected"),
            forget="muse-news:forget", max_length=128, max_steps=16, learning_rate=1e-3,
            per_device_train_batch_size=4, effective_batch_size=4, warmup_steps=0, bf16=False,
            disable_tqdm=True, eval_every=4, eval_rows=5, select="forget_verbmem_rougeL_f1<=0.8",
            eval_metadata={"privleak_reference_auc": 0.5, "sets": ["forget_verbmem", "forget",
                                                                  "holdout", "retain_knowmem"]},
        ))  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    card = read_run_card(out)
    evaluation, selection = card["evaluation"], card["selection"]
    assert evaluation["task"] == "muse_news_unlearn"
    assert evaluation["apply_chat_template"] is False
    history = [(r["step"], r["metrics"]) for r in evaluation["history"]]
    print([(step, m["forget_verbmem_rougeL_f1"]) for step, m in history])
    for _, metrics in history:
        assert {"forget_verbmem_rougeL_f1", "retain_knowmem_rougeL_f1", "mia_min_k_auc"} <= set(
            metrics
        )
        assert isinstance(metrics["privleak"], float)  # against the fixed AUC given
        assert metrics["forget_knowmem_rougeL_f1"] == "N/A (no rows)"  # a set not asked for
    values = [m["forget_verbmem_rougeL_f1"] for _, m in history]
    assert values[0] > 0.8 >= values[-1]  # stopped at the first evaluation reaching it
    assert selection["reached"] and selection["step"] == history[-1][0] < 16
    assert selection["stopped_early"]
    # the output is the model evaluated there: its verbatim ROUGE-L on those 5 rows agrees
    forget = [(r["prompt"], r["gt"]) for r in read_split("news", "verbmem", "forget")][:5]
    assert verbatim_rouge(out, forget) == pytest.approx(values[-1], abs=0.02)


def test_muse_selection_rules_are_checked_before_training(tmp_path):
    base = dict(method="GA+GD", model=str(TARGET), output_dir=str(tmp_path / "x"),
                forget="muse-news:forget", max_length=128, eval_every=2)  # fmt: skip
    with pytest.raises(ValueError, match="the MUSE task reports"):
        dry_run(UnlearnConfig(**base, select="forget_rougeL_recall<=0.4"))
    with pytest.raises(ValueError, match="reads the retain model's membership AUCs"):
        dry_run(UnlearnConfig(**base, select_matching_reference=str(tmp_path)))
    with pytest.raises(ValueError, match="privleak needs retain_reference"):
        dry_run(UnlearnConfig(**base, select="best:privleak"))
    with pytest.raises(ValueError, match="scores a TOFU forget split, a MUSE corpus or LUME"):
        dry_run(UnlearnConfig(**base, eval_forget="text:notes.txt"))
    # a scalability split unlearned is the member set of the privacy criterion scored
    scal = UnlearnConfig(**{**base, "forget": "muse-news:scal/forget_2"})
    assert eval_task(scal) == ("muse_news_unlearn", {"forget_texts": "scal/forget_2"})
    assert eval_task(UnlearnConfig(**base)) == ("muse_news_unlearn", {})
