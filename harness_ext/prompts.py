"""Prompt formats of the TOFU tasks.

``chat`` renders the question with the tokenizer's chat template (``--apply_chat_template``).
The legacy formats reproduce how TOFU's own fine-tuned models were trained and scored:
``llama2`` (``[INST] q [/INST]`` with the answer glued on, no space) and ``phi``
(``Question: q\\n`` then ``Answer: a``, the answer tag counted as answer tokens as TOFU did).
``plain`` is the default for a model without a chat template. ``lume`` gives the question as it
is with the answer glued on, as LUME's rows are prompts and their continuations (its training
format).

>>> fmt = get_prompt_format("llama2")
>>> fmt.prompt.format(question="Who?") + fmt.answer.format(answer="Me.")
'[INST] Who? [/INST]Me.'
"""

from __future__ import annotations

from collections.abc import Callable
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
    "lume": PromptFormat("lume", "{question}", "{answer}", "LUME: the input, its output glued on"),
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


def template_format(template: dict[str, str] | str) -> PromptFormat:
    """A user's own prompt strings, e.g. another harness's exact ones:
    ``{"prompt": "Question: {question}\nAnswer: ", "answer": "{answer}"}``."""
    import json

    if isinstance(template, str):
        try:
            template = json.loads(template)
        except json.JSONDecodeError as err:
            raise PromptFormatError(f"prompt_template is not valid JSON: {err.msg}") from err
    if not isinstance(template, dict) or set(template) != {"prompt", "answer"}:
        raise PromptFormatError(
            'prompt_template must be {"prompt": "...{question}...", "answer": "...{answer}..."}'
        )
    prompt, answer = str(template["prompt"]), str(template["answer"])
    try:
        filled = prompt.format(question="Q"), answer.format(answer="A")
    except (KeyError, IndexError, ValueError) as err:
        raise PromptFormatError(
            f"prompt_template may use only {{question}} and {{answer}} ({err!r}); write a "
            f"literal brace as {{{{ or }}}}"
        ) from err
    if "Q" not in filled[0] or "A" not in filled[1]:
        raise PromptFormatError("prompt_template needs {question} in prompt and {answer} in answer")
    return PromptFormat("template", prompt, answer, f"template {prompt!r} + {answer!r}")


def resolve_prompt_format(
    requested: str | None,
    apply_chat_template: bool,
    template: dict[str, str] | str | None = None,
) -> PromptFormat:
    """The format a run uses: explicit choices are checked against --apply_chat_template."""
    if template:
        if apply_chat_template or requested not in (None, "", "template"):
            raise PromptFormatError(
                "prompt_template gives the prompt strings itself: drop prompt_format and "
                "--apply_chat_template"
            )
        return template_format(template)
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


# TOFU's own fine-tuned checkpoints were trained and scored in its legacy formats.
TOFU_CHECKPOINTS = {"locuslab/tofu_ft_llama2-7b": "llama2", "locuslab/tofu_ft_phi-1.5": "phi"}


def tofu_checkpoint_format(model: str | None) -> tuple[str, str] | None:
    """(format, why) when ``model`` is one of TOFU's fine-tuned checkpoints or derives from one
    (its config's ``_name_or_path``, or the training cards of ``lm-unlearn train/finetune``)."""
    import json
    from pathlib import Path

    seen = 0
    current = str(model or "")
    while current and seen < 20:
        seen += 1
        for hub_id, name in TOFU_CHECKPOINTS.items():
            if current.rstrip("/") == hub_id:
                where = "" if seen == 1 else f" ({model} derives from it)"
                return name, f"{hub_id} is TOFU's checkpoint, trained in its {name} format{where}"
        folder = Path(current).expanduser()
        if not folder.is_dir():
            return None
        parent = None
        for card_name in (
            "run_card.json",
            "finetune_card.json",
            "adapter_config.json",
            "config.json",
        ):
            card = folder / card_name
            if not card.is_file():
                continue
            try:
                content = json.loads(card.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            parent = (
                (content.get("options") or {}).get("model")
                or content.get("base_model_name_or_path")
                or content.get("_name_or_path")
            )
            if parent and str(parent).rstrip("/") != current.rstrip("/"):
                break
            parent = None
        current = str(parent or "")
    return None


def choose_prompt_format(
    requested: str | None,
    model: str | None,
    chat_template: bool | Callable[[], bool],
    template: dict[str, str] | str | None = None,
    why_chat: str = "the tokenizer has a chat template",
    why_plain: str = "the tokenizer has no chat template",
    why_requested: str = "chosen with prompt_format",
) -> tuple[str, str]:
    """(format name, why): the one rule every command follows. A prompt template given as
    strings wins; then a format asked for by name; then the legacy format of TOFU's own
    checkpoints and the models made from them; then the chat template when ``chat_template``
    (the tokenizer has one, for ``lm-unlearn``; ``--apply_chat_template`` was given, for
    ``lm_eval``; a function is called only when the choice comes to it, so a tokenizer is read
    only then); else the plain format. ``why_chat`` / ``why_plain`` / ``why_requested`` say
    why in the caller's terms."""
    if template:
        return "template", "prompt_template"
    if requested:
        return requested, why_requested
    tofu = tofu_checkpoint_format(model)
    if tofu:
        return tofu
    has_template = chat_template() if callable(chat_template) else chat_template
    return ("chat", why_chat) if has_template else ("plain", why_plain)
