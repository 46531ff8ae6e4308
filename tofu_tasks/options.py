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
from harness_ext.lm_eval_plugin.task_options import ScoringOptions
from tofu_tasks import data
from tofu_tasks.lume.options import LumeOptions
from tofu_tasks.muse.options import MuseOptions
from tofu_tasks.wmdp.options import WmdpOptions

# Keys the task YAMLs or the project put there themselves.
INTERNAL_KEYS = ("forget_split", "version", "tofu", "config_source")
MAX_DISTANCE = 2
MIN_LENGTH = 6  # short keys (dtype, peft, device) are too close to everything to judge


class _CheckedNames:
    """Options whose metadata is checked for mistyped names before anything is read."""

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]):
        try:
            check_option_names(metadata, hf_model_arguments())
        except TaskOptionError as err:
            raise TaskSetupError(str(err)) from err
        return super().from_metadata(metadata)


@dataclass(frozen=True)
class TaskOptions(_CheckedNames, ScoringOptions):
    """The options of the ``tofu_forgetXX_unlearn`` tasks: the shared ones and TOFU's rows."""

    forget_split: str = ""  # set by the task YAML
    rows: str = "legacy"
    forget_rows: str | None = None
    forget_question: str = "original"  # "paraphrased": TOFU's rephrased forget questions
    retain_question: str = "original"  # "paraphrased": TOFU's rephrased retain questions

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> TaskOptions:
        if "forget_split" not in metadata:
            raise TaskSetupError("task metadata lacks 'forget_split' (set by the task YAML)")
        return super().from_metadata(metadata)

    @classmethod
    def for_split(cls, metadata: Mapping[str, Any], forget_split: str) -> TaskOptions:
        """The options of ``tofu_<forget_split>_unlearn`` given ``metadata``, as its task parses
        them (the split is the task YAML's)."""
        return cls.from_metadata({**metadata, "forget_split": forget_split})

    def check(self) -> None:
        super().check()
        try:
            data.scored_sets(self.sets)
        except data.TofuDataError as err:
            raise TaskSetupError(str(err)) from err


@dataclass(frozen=True)
class RealWorldOptions(_CheckedNames, ScoringOptions):
    """The options of ``realworld_unlearn``: the shared ones and its two data files."""

    forget_data: str | None = None  # a JSON file in the shipped schema (default: the project's)
    neighbor_data: str | None = None


# Every option a task takes, and the tokenizer of the token counts.
TASK_OPTIONS = tuple(
    sorted(
        {
            f.name
            for options in (TaskOptions, RealWorldOptions, MuseOptions, WmdpOptions, LumeOptions)
            for f in fields(options)
        }
        - {"forget_split", "corpus"}
        | {"tokenizer"}
    )
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
                f"unknown task option {key!r}: {hint}The TOFU, real-world and MUSE tasks take "
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


def given_task_options(
    given: str | Mapping[str, Any] | None, max_rows_per_set: int | None = None
) -> dict[str, Any]:
    """Task options a command was given: ``--metadata`` JSON or a mapping (a YAML config's, a
    caller's), mistyped names refused; ``--max-rows-per-set`` folded in."""
    if given is None or isinstance(given, str):
        options = parse_metadata(given)
    else:
        options = dict(given)
        check_option_names(options, hf_model_arguments())
    if max_rows_per_set is not None:
        options["max_rows_per_set"] = max_rows_per_set
    return options


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
