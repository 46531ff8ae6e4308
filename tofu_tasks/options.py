"""The options of the TOFU tasks, parsed once into :class:`TaskOptions`, and a check that stops a
run on a mistyped one.

They come from the task metadata, i.e. ``--metadata '{...}'`` (or ``--model_args``):


============================  =======================================================
``rows``                      ``legacy`` (TOFU's first-300 rule, default) or ``full``
``max_rows_per_set``          keep at most N rows of each set, or {"set": N, ...} (quick runs)
``forget_rows``               "start:stop": score only these forget rows (continual requests)
``data_dir``                  local TOFU directory (else ``TOFU_DATA_DIR``, else the hub)
``prompt_format``             ``plain`` (default), ``llama2``, ``phi``; ``chat`` comes with
                              ``--apply_chat_template``
``retain_reference``          the retain model's run, reference file or legacy log
                              (forget quality)
``pre_unlearning_reference``  the model's outputs before unlearning (``lm-unlearn reference``):
                              cosine similarity and entailment on Real Authors / World Facts
``embedding_model``           sentence-embedding model for cosine similarity
                              (default sentence-transformers/paraphrase-MiniLM-L6-v2)
``nli_model``                 NLI classifier for entailment
                              (default sileod/deberta-v3-base-tasksource-nli)
``aux_device``                device of the two models above (default: cuda if available)
``bertscore``                 ``true`` adds ``<set>_bertscore_f1``; ``bertscore_model`` picks it
``generation_max_length``     prompt + generation token budget (TOFU: 200)
``scored_tokens``             ``tofu`` (default): ``tokenize(prompt + answer)`` after the
                              prompt's positions, plus EOS, as TOFU scores; ``answer-only``:
                              the answer's tokens as lm-eval splits them, no EOS (earlier runs)
``prompt_template``           {"prompt": "...{question}...", "answer": "...{answer}..."}:
                              another harness's exact strings
``tokenizer``                 tokenizer for token counts when ``pretrained`` is not a path/id
``sets``                      score only these sets, e.g. ``["forget", "holdout"]`` (default:
                              all); the others read "N/A (no rows)"
``truth_ratio``               ``false``: score only the ground-truth answer (no paraphrased or
                              perturbed answers): truth ratio, forget quality and the
                              Real Authors / World Facts probability read N/A; about a third
                              of the log-likelihood work (evaluations during training)
``token_scores``              ``auto`` (default): per-token log-probs from the backend when it
                              gives them (``hf-unlearn``), else one log-likelihood request per
                              answer token of the forget and holdout rows (``hf``, ``vllm``);
                              ``requests``: always those requests; ``off``: none (Min-K%,
                              extraction strength and exact memorisation read N/A)
``forget_question``           ``paraphrased``: ask the forget rows in TOFU's rephrased words
``retain_question``           ``paraphrased``: the same for the retain rows
``holdout``                   rows the model never saw, for membership inference: TOFU's
                              holdout split of the forget split's size (default, from the
                              hub or a local directory that has it), ``holdout05``, a row
                              slice of a local file (``"retain_perturbed[360:400]"``), a
                              JSON Lines file, or ``none``
============================  =======================================================

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
from dataclasses import dataclass, fields
from typing import Any

from harness_ext.lm_eval_plugin.requests import TaskSetupError
from harness_ext.lm_eval_plugin.scored_tokens import SCORED_TOKENS
from tofu_tasks import data

TOKEN_SCORES = ("auto", "requests", "off")

# Keys the task YAMLs or the project put there themselves.
INTERNAL_KEYS = ("forget_split", "version", "tofu", "config_source")
MAX_DISTANCE = 2
MIN_LENGTH = 6  # short keys (dtype, peft, device) are too close to everything to judge


@dataclass(frozen=True)
class TaskOptions:
    forget_split: str
    rows: str = "legacy"
    max_rows_per_set: int | dict[str, int] | None = None
    forget_rows: str | None = None
    data_dir: str | None = None
    prompt_format: str | None = None
    retain_reference: str | None = None
    pre_unlearning_reference: str | None = None
    embedding_model: str | None = None
    nli_model: str | None = None
    aux_device: str | None = None
    bertscore: bool = False
    bertscore_model: str | None = None
    generation_max_length: int = 200
    scored_tokens: str = "tofu"
    prompt_template: dict[str, str] | str | None = None
    holdout: str | bool | None = None
    forget_question: str = "original"  # "paraphrased": TOFU's rephrased forget questions
    retain_question: str = "original"  # "paraphrased": TOFU's rephrased retain questions
    sets: list[str] | str | None = None  # score only these sets (default: all of them)
    truth_ratio: bool | str = True  # false: no paraphrased / perturbed answers (quick runs)
    token_scores: str = "auto"  # per-token numbers: the backend's, or "requests", or "off"

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> TaskOptions:
        if "forget_split" not in metadata:
            raise TaskSetupError("task metadata lacks 'forget_split' (set by the task YAML)")
        try:
            check_option_names(metadata, hf_model_arguments())
        except TaskOptionError as err:
            raise TaskSetupError(str(err)) from err
        known = {name for name in cls.__dataclass_fields__ if metadata.get(name) is not None}
        options = cls(**{name: metadata[name] for name in known})
        if int(options.generation_max_length) <= 0:
            raise TaskSetupError("generation_max_length must be a positive number of tokens")
        for flag in ("bertscore", "truth_ratio"):
            if str(getattr(options, flag)).lower() not in ("true", "false", "1", "0"):
                raise TaskSetupError(
                    f"{flag} must be true or false, got {getattr(options, flag)!r}"
                )
        try:
            data.scored_sets(options.sets)
        except data.TofuDataError as err:
            raise TaskSetupError(str(err)) from err
        if options.token_scores not in TOKEN_SCORES:
            raise TaskSetupError(
                f"token_scores must be one of {', '.join(TOKEN_SCORES)}, got "
                f"{options.token_scores!r}"
            )
        if options.scored_tokens not in SCORED_TOKENS:
            raise TaskSetupError(
                f"scored_tokens must be one of {', '.join(SCORED_TOKENS)}, got "
                f"{options.scored_tokens!r}"
            )
        return options

    @property
    def wants_bertscore(self) -> bool:
        return str(self.bertscore).lower() in ("true", "1")

    @property
    def wants_truth_ratio(self) -> bool:
        return str(self.truth_ratio).lower() in ("true", "1")


# Every option a task takes: TaskOptions' fields, the tokenizer of the token counts and the
# real-world task's data files.
TASK_OPTIONS = (
    *(f.name for f in fields(TaskOptions) if f.name != "forget_split"),
    "tokenizer",
    "forget_data",
    "neighbor_data",
)


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
