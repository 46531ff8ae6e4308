"""The scored tokens of every answer are TOFU's: their count equals the logged one on every row.

TOFU's logs record, per row, how many tokens each answer's loss covered (`num_token_gt`,
`num_token_paraphrased`, `num_token_perturb`). With the logged model's tokenizer (Llama-2's
SentencePiece vocabulary, GPT-2's BPE for Phi-1.5, both vocab-only GGUF files from llama.cpp's
sources, placed in .venv/vocab by `make venv`) and the task's legacy prompt formats, the project's
rule for the scored tokens must give the same counts.
"""

import json
import os
from pathlib import Path

import pytest

from harness_ext.lm_eval_plugin.scored_tokens import eos_text, tofu_span
from harness_ext.prompts import get_prompt_format
from tofu_tasks.data import read_split
from tofu_tasks.eval_sets import EVAL_SETS, FORGET

VOCAB = Path(
    os.environ.get("LM_UNLEARN_VOCAB_DIR") or Path(__file__).parents[1] / ".venv" / "vocab"
)
LOGS = {  # log directory -> (forget split of its forget log, prompt format, vocabulary file)
    "llama2-7b_full_wd0.01": ("forget10", "llama2", "ggml-vocab-llama-spm.gguf"),
    "llama2-7b_retain90_wd0.01": ("forget10", "llama2", "ggml-vocab-llama-spm.gguf"),
    "llama2-7b_retain95_wd0.01": ("forget05", "llama2", "ggml-vocab-llama-spm.gguf"),
    "llama2-7b_retain99_wd0.01": ("forget01", "llama2", "ggml-vocab-llama-spm.gguf"),
    "phi_full_wd0.01": ("forget10", "phi", "ggml-vocab-gpt-2.gguf"),
    "phi_retain90_wd0.01": ("forget10", "phi", "ggml-vocab-gpt-2.gguf"),
}


def vocab_tokenizer(name: str):
    from transformers import AutoTokenizer

    if not (VOCAB / name).is_file():
        pytest.fail(
            f"{VOCAB / name} is missing: `make venv` extracts it (or set LM_UNLEARN_VOCAB_DIR)"
        )
    return AutoTokenizer.from_pretrained(VOCAB, gguf_file=name)


@pytest.mark.parametrize("log_dir", sorted(LOGS))
def test_scored_token_counts_equal_tofus_on_every_row(legacy_logs, tofu_dir, log_dir):
    forget_split, format_name, vocab = LOGS[log_dir]
    tokenizer = vocab_tokenizer(vocab)
    eos = eos_text(tokenizer)
    fmt = get_prompt_format(format_name)
    checked = mismatched = 0
    for eval_set in EVAL_SETS:
        log = json.loads((legacy_logs / log_dir / eval_set.legacy_log_file).read_text())
        rows = read_split(eval_set.source_file(forget_split), tofu_dir)
        for key, logged_answer in log["num_token_gt"].items():
            row = rows[int(key)]
            prompt = fmt.prompt.format(question=row["question"])
            answers = [row["answer"]]
            logged = [logged_answer]
            if eval_set.base_answer_field != "answer":
                answers.append(row[eval_set.base_answer_field])
                logged.append(log["num_token_paraphrased"][key])
            answers += row["perturbed_answer"]
            logged += log["num_token_perturb"][key]
            counts = [
                tofu_span(tokenizer, prompt, fmt.answer.format(answer=a), eos).count
                for a in answers
            ]
            checked += len(counts)
            mismatched += counts != logged
            assert counts == logged, f"{log_dir} {eval_set.name} row {key}"
    forget_rows = {"forget05": 200, "forget01": 40}.get(forget_split, 300)
    assert checked == (forget_rows + 300) * 7 + (100 + 117) * 4
    assert mismatched == 0


def test_the_forget_log_rows_are_the_first_rows_of_the_split(legacy_logs, tofu_dir):
    """The row numbers above index the split's file: the logged prompts say so."""
    log = json.loads((legacy_logs / "llama2-7b_full_wd0.01" / FORGET.legacy_log_file).read_text())
    rows = read_split("forget10_perturbed", tofu_dir)
    for key, (prompt, _, _) in log["generated_text"].items():
        assert rows[int(key)]["question"] in prompt
