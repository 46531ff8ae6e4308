"""The names of the task options, and a check that stops a run on a mistyped one.

lm-eval merges the model arguments into the task metadata, so unknown keys cannot all be refused
(``dtype``, ``device``, a backend's own options). A key that is not an option but is within a
small edit distance of one (``max_row_per_set``), or that starts with ``tofu``, is surely a
mistyped option: the run stops before the model loads and names the known options.

>>> suggestion("max_row_per_set")
'max_rows_per_set'
>>> suggestion("dtype") is None
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# TOFU tasks (tofu_tasks.task.TaskOptions) and the real-world task's data options.
TASK_OPTIONS = (
    "rows", "max_rows_per_set", "forget_rows", "data_dir", "prompt_format", "prompt_template",
    "retain_reference", "pre_unlearning_reference", "embedding_model", "nli_model", "aux_device",
    "bertscore", "bertscore_model", "generation_max_length", "scored_tokens", "tokenizer",
    "forget_data", "neighbor_data", "forget_question", "retain_question", "holdout", "sets",
    "truth_ratio", "token_scores",
)  # fmt: skip
# Keys the task YAMLs or the project put there themselves.
INTERNAL_KEYS = ("forget_split", "version", "tofu", "config_source")
MAX_DISTANCE = 2
MIN_LENGTH = 6  # short keys (dtype, peft, device) are too close to everything to judge


class TaskOptionError(ValueError):
    """A task option name that is surely a typo."""


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions)."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def suggestion(key: str, known: Iterable[str] = TASK_OPTIONS) -> str | None:
    """The known option a key is a small edit away from, if any."""
    if len(key) < MIN_LENGTH:
        return None
    close = sorted((edit_distance(key, name), name) for name in known)
    distance, name = close[0]
    return name if distance <= MAX_DISTANCE else None


def check_option_names(metadata: Mapping[str, Any], backend_args: Iterable[str] = ()) -> None:
    """Refuse keys that are mistyped task options; other unknown keys pass (model arguments)."""
    allowed = set(TASK_OPTIONS) | set(INTERNAL_KEYS) | set(backend_args)
    for key in metadata:
        if key in allowed:
            continue
        near = suggestion(key)
        if near or key.lower().startswith("tofu"):
            hint = f"did you mean {near}? " if near else ""
            raise TaskOptionError(
                f"unknown task option {key!r}: {hint}The TOFU and real-world tasks take "
                f"{', '.join(sorted(TASK_OPTIONS))}."
            )


def parse_metadata(text: str | None) -> dict[str, Any]:
    """A command's ``--metadata`` JSON: an object of task options, mistyped names refused before
    any model is loaded."""
    import json

    try:
        metadata = json.loads(text) if text else {}
    except json.JSONDecodeError as err:
        raise TaskOptionError(f"--metadata is not valid JSON: {err.msg}") from err
    if not isinstance(metadata, dict):
        raise TaskOptionError("--metadata must be a JSON object")
    check_option_names(metadata, hf_model_arguments())
    return metadata


def hf_model_arguments() -> frozenset[str]:
    """The keyword arguments of lm-eval's hf backend (and this project's), never typos."""
    import inspect

    names = {"pretrained", "peft", "delta", "gguf_file", "gen_batch_size", "share_context",
             "prompt_lookup_tokens"}  # fmt: skip
    try:
        from lm_eval.models.huggingface import HFLM

        names |= set(inspect.signature(HFLM.__init__).parameters)
    except ImportError:
        pass
    return frozenset(names)
