"""What the metrics are called in tables and plots, and one line on each: the leaderboard's
column names and glossary.

>>> label("real_authors_rougeL_recall"), label("privleak")
('RA ROUGE-L', 'privleak')
>>> format_value("privleak", -65.14), format_value("privleak", 125.0)
('-65.1%', '+125.0%')
"""

from __future__ import annotations

import math
import re
from typing import Any

SET_LABELS = {
    "forget": "forget",
    "retain": "retain",
    "real_authors": "RA",
    "world_facts": "WF",
    "neighbor": "neighbour",
    "holdout": "holdout",
    "forget_knowmem": "forget knowmem",
    "retain_knowmem": "retain knowmem",
    "forget_verbmem": "forget verbmem",
}
METRIC_LABELS = {
    "rougeL_recall": "ROUGE-L",
    "prob": "prob",
    "truth_ratio": "TR",
    "truth_ratio_closer_look": "TR (closer look)",
    "token_entropy": "token entropy",
    "cosine_similarity": "cosine sim.",
    "entailment": "entailment",
    "bertscore_f1": "BERTScore",
    "extraction_strength": "extraction strength",
    "exact_memorization": "exact memorisation",
    "rougeL_f1": "ROUGE-L F1",
}
NAMED = {
    "forget_quality": "FQ",
    "forget_efficacy": "FE",
    "model_utility": "MU-18",
    "tofu_model_utility": "MU-9",
    "privleak": "privleak",
    "model_utility_with_general": "MU with general ability",
    "forget_wmdp_acc": "WMDP acc.",
    "forget_wmdp_bio_acc": "WMDP-bio acc.",
    "forget_wmdp_chem_acc": "WMDP-chem acc.",
    "forget_wmdp_cyber_acc": "WMDP-cyber acc.",
    "mmlu_acc": "MMLU acc.",
    "forget_wmdp_acc_change": "WMDP acc. change",
    "mmlu_acc_change": "MMLU acc. change",
    "lume_final_score": "LUME final",
    "lume_task_aggregate": "LUME task agg.",
    "lume_mia_score": "LUME MIA score",
}
ATTACK_LABELS = {
    "loss": "LOSS",
    "zlib": "ZLib",
    "min_k": "Min-K%",
    "min_k_plus_plus": "Min-K%++",
    "reference": "reference",
}
SET_DEFINITIONS = {
    "rougeL_recall": "ROUGE-L recall of the greedy answer against the dataset answer",
    "prob": "length-normalised probability of the answer (RA/WF: against the perturbed ones)",
    "truth_ratio": "truth ratio of paraphrased against perturbed answers",
    "truth_ratio_closer_look": "1 − mean min(R, 1/R)",
    "token_entropy": "unigram entropy of the answer's tokens (low: repetitive text)",
    "cosine_similarity": "embedding similarity to what the model said before unlearning",
    "entailment": "share of answers an NLI model says entail the reference",
    "bertscore_f1": "BERTScore F1 against the dataset answer",
    "extraction_strength": "share of the answer the model completes by itself (teacher forced)",
    "exact_memorization": "share of answer tokens that are the model's argmax",
    "rougeL_f1": "ROUGE-L F1 of the greedy output against the reference (MUSE: knowmem, an "
    "answer after 3 examples; verbmem, a passage's continuation)",
}
DEFINITIONS = {
    "forget_quality": "KS-test p-value of forget truth ratios against the retain model's",
    "forget_efficacy": "1 − mean of the forget set's ROUGE-L, prob, TR, cosine sim. and entailment",
    "model_utility": "harmonic mean of 6 metrics × retain, RA, WF (closer look)",
    "tofu_model_utility": "harmonic mean of ROUGE-L, prob, TR × retain, RA, WF (TOFU)",
    "privleak": "Min-K% AUC against the retain model's, in percent: 0 as the retain model, "
    "negative: the forget rows still look familiar, positive: over-unlearned",
    "forget_wmdp_acc": "accuracy on WMDP's hazardous-knowledge questions, all domains (chance "
    "0.25)",
    "forget_wmdp_bio_acc": "accuracy on WMDP's biosecurity questions (chance 0.25)",
    "forget_wmdp_chem_acc": "accuracy on WMDP's chemical-security questions (chance 0.25)",
    "forget_wmdp_cyber_acc": "accuracy on WMDP's cybersecurity questions (chance 0.25)",
    "mmlu_acc": "accuracy on MMLU's questions, all subjects scored (general knowledge)",
    "forget_wmdp_acc_change": "WMDP accuracy minus the model's before unlearning, same questions",
    "mmlu_acc_change": "MMLU accuracy minus the model's before unlearning, same questions",
    "lume_final_score": "SemEval-2025 Task 4's final score: mean of the task aggregate, the "
    "MIA score and MMLU accuracy",
    "lume_task_aggregate": "harmonic mean of the regurgitation and knowledge means of each "
    "subtask scored on forget and retain (12 with all three; forget as 1 - mean)",
    "lume_mia_score": "1 - 2|AUC - 0.5| of the loss attack, forget against holdout rows",
}


# LUME's per-row metrics: forget_task1_sc_rougeL_recall, retain_qa_exact_match, ...
_LUME = re.compile(r"^(forget|retain)_(?:task([123])_)?(sc|qa)_(rougeL_recall|exact_match)$")
LUME_KINDS = {"sc": "SC", "qa": "QA"}
LUME_SCORES = {"rougeL_recall": "ROUGE-L", "exact_match": "EM"}


def _lume(metric: str) -> tuple[str, str | None, str, str] | None:
    found = _LUME.match(metric)
    return found.groups() if found else None  # type: ignore[return-value]


def _lume_label(parts: tuple[str, str | None, str, str]) -> str:
    split, task, kind, score = parts
    return " ".join(p for p in (split, f"T{task}" if task else "", LUME_KINDS[kind],
                                LUME_SCORES[score]) if p)  # fmt: skip


def _lume_definition(parts: tuple[str, str | None, str, str]) -> str:
    split, task, kind, score = parts
    what = (
        "exact match of the answer" if score == "exact_match"
        else "ROUGE-L recall of the expected " + ("completion" if kind == "sc" else "answer")
    )  # fmt: skip
    rows = "sentence completions" if kind == "sc" else "questions"
    return f"{what} (LUME, {split} {rows}, {f'subtask {task}' if task else 'every subtask'})"


def _split(metric: str) -> tuple[str, str] | None:
    for set_name in sorted(SET_LABELS, key=len, reverse=True):
        rest = metric.removeprefix(f"{set_name}_")
        if rest != metric and rest in METRIC_LABELS:
            return set_name, rest
    return None


def label(metric: str) -> str:
    """A short column name ("forget ROUGE-L", "MU-9", "Min-K% AUC"); unknown keys as given."""
    if metric in NAMED:
        return NAMED[metric]
    if metric.startswith("mia_") and metric.endswith("_auc"):
        attack = metric.removeprefix("mia_").removesuffix("_auc")
        return f"{ATTACK_LABELS.get(attack, attack)} AUC"
    if lume := _lume(metric):
        return _lume_label(lume)
    parts = _split(metric)
    return f"{SET_LABELS[parts[0]]} {METRIC_LABELS[parts[1]]}" if parts else metric


def definition(metric: str) -> str:
    """One line on what the metric measures."""
    if metric in DEFINITIONS:
        return DEFINITIONS[metric]
    if metric.startswith("mia_") and metric.endswith("_auc"):
        return "AUC of telling forget rows from unseen holdout rows by this attack's score"
    if lume := _lume(metric):
        return _lume_definition(lume)
    parts = _split(metric)
    if parts:
        return f"{SET_DEFINITIONS[parts[1]]} ({SET_LABELS[parts[0]]} set)"
    return ""


def format_value(metric: str, value: Any) -> str:
    """A value as the tables show it: 4 decimals, privleak as a signed percentage, "N/A" for a
    reason, blank for nothing."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, (int, float)):
        if math.isnan(value):
            return "NaN"
        if metric == "privleak":
            return f"{value:+.1f}%"
        return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.2e}"
    text = str(value)
    return "N/A" if text.startswith("N/A") else text
