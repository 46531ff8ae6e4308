"""Prompt formats of the TOFU tasks.

``chat`` renders the question with the tokenizer's chat template (``--apply_chat_template``).
The legacy formats reproduce how TOFU's own fine-tuned models were trained and scored:
``llama2`` (``[INST] q [/INST]`` with the answer glued on, no space) and ``phi``
(``Question: q\\n`` then ``Answer: a``, the answer tag counted as answer tokens as TOFU did).
``plain`` is the default for a model without a chat template.

>>> fmt = get_prompt_format("llama2")
>>> fmt.prompt.format(question="Who?") + fmt.answer.format(answer="Me.")
'[INST] Who? [/INST]Me.'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptFormat:
    name: str
    prompt: str  # with a {question} placeholder; for "chat" the user message
    answer: str  # continuation scored by log-likelihood, with an {answer} placeholder
    description: str


PROMPT_FORMATS: dict[str, PromptFormat] = {
    "plain": PromptFormat(
        "plain", "Question: {question}\nAnswer:", " {answer}", "Question: q\\nAnswer: a"
    ),
    "chat": PromptFormat("chat", "{question}", "{answer}", "the tokenizer's chat template"),
    "llama2": PromptFormat(
        "llama2", "[INST] {question} [/INST]", "{answer}", "TOFU Llama-2: [INST] q [/INST]a"
    ),
    "phi": PromptFormat(
        "phi", "Question: {question}\n", "Answer: {answer}", "TOFU Phi-1.5: Question: q\\nAnswer: a"
    ),
}
LEGACY_FORMATS = ("llama2", "phi")


class PromptFormatError(ValueError):
    """The requested prompt format is unknown or conflicts with other options."""


def get_prompt_format(name: str) -> PromptFormat:
    try:
        return PROMPT_FORMATS[name]
    except KeyError:
        known = ", ".join(PROMPT_FORMATS)
        raise PromptFormatError(f"unknown prompt_format {name!r}; choose one of {known}") from None


def resolve_prompt_format(requested: str | None, apply_chat_template: bool) -> PromptFormat:
    """The format a run uses: explicit choices are checked against --apply_chat_template."""
    if apply_chat_template:
        if requested not in (None, "", "chat"):
            raise PromptFormatError(
                f"prompt_format={requested!r} conflicts with --apply_chat_template: the legacy "
                f"formats are plain text. Drop one of the two."
            )
        return PROMPT_FORMATS["chat"]
    if requested == "chat":
        raise PromptFormatError(
            "prompt_format='chat' needs --apply_chat_template (and a tokenizer with a chat template)"
        )
    return get_prompt_format(requested or "plain")
