"""MUSE's formulas, as open-unlearning computes them (Shi et al. 2024; open-unlearning's MUSE
metrics): a generation is cut at the first of the criterion's stop words and stripped, then
scored by ROUGE-L F1 with stemming against the reference (MUSE reports F1 where TOFU reports
recall). Membership inference, privleak and extraction strength are the shared ones
(:mod:`harness_ext.metrics.privacy`).

>>> cut_at_stop_words("Paris.\\n\\nQuestion: Who?", ["\\n\\n", "\\nQuestion", "Question:"])
'Paris.'
>>> round(rouge_l_f1("the cats sat", "the cat sat down"), 4)
0.8571
"""

from __future__ import annotations

from collections.abc import Sequence

from harness_ext.metrics.tofu import _rouge_scorer

EOS_TEXT = "</s>"  # cut too, as open-unlearning does, when a decode kept it
KNOWMEM_STOP_WORDS = ("\n\n", "\nQuestion", "Question:")
KNOWMEM_NEW_TOKENS = 32
VERBMEM_NEW_TOKENS = 128


def cut_at_stop_words(text: str, stop_words: Sequence[str]) -> str:
    """The text before the earliest stop word (and before an EOS string), stripped."""
    for word in (EOS_TEXT, *stop_words):
        text = text.split(word, 1)[0]
    return text.strip()


def rouge_l_f1(generation: str, reference: str) -> float:
    """ROUGE-L F1 of a generation against the reference, with stemming."""
    return _rouge_scorer().score(reference, generation)["rougeL"].fmeasure
