"""What an audit is: its settings (checked before anything runs), the attacked variants it plans,
and the scores and results it records."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness_ext.row_slices import RowSliceError, slice_range
from harness_ext.workflows.score_inputs import ScoreSettings

ATTACKS = ("relearn", "quantize", "paraphrase", "fewshot")
FEWSHOT_EXAMPLES = 5  # the few-shot attack's in-context examples (MMLU's usual 5-shot)
QUANTIZE_BITS = (8, 4)
ATTACK_CARD = "attack_card.json"
AUDIT_FORMAT = "lm-unlearn-audit/1"
BITSANDBYTES = 'pip install "bitsandbytes>=0.50"'
QUANTIZE_SCHEMES = {
    8: "LLM.int8(): int8 weights with one absmax scale per output row; activation features "
    "above 6.0 stay in 16 bits",
    4: "NF4: 4-bit NormalFloat weights in blocks of 64, one absmax scale per block",
}


class AuditError(ValueError):
    """Bad input to ``lm-unlearn audit``: the message says what and how to fix it."""


RELEARN_SPLITS = ("same-authors", "other-authors")
KNOWLEDGE_ATTACKS = ("relearn",)  # attacks that can teach: run on the control too


@dataclass(frozen=True)
class AuditedBenchmark:
    """What an audit scores on one benchmark, and which attacks apply to it."""

    sets: tuple[str, ...]  # the sets scored unless --metadata names others
    described: str  # how tables name them
    forget_sets: tuple[str, ...]  # the sets whose rows the forget metrics aggregate
    attacks: tuple[str, ...]  # the attacks that apply (the default)
    not_applicable: dict[str, str] = field(default_factory=dict)  # attack -> why not


NO_FEWSHOT = "its questions are asked with their own prompts; the few-shot attack is WMDP's"
TOFU_AUDIT = AuditedBenchmark(
    ("forget", "holdout"), "forget and holdout sets", ("forget",),
    ("relearn", "quantize", "paraphrase"), {"fewshot": NO_FEWSHOT},
)  # fmt: skip
# MUSE's forget criteria: the verbatim continuations and the knowledge questions of the forget
# corpus (its privacy texts are a corpus-level AUC the scoring runs give, not a forget_* row mean)
MUSE_AUDIT = AuditedBenchmark(
    ("forget_verbmem", "forget_knowmem"), "forget verbmem and knowmem sets",
    ("forget_verbmem", "forget_knowmem"), ("relearn", "quantize"),
    {"paraphrase": "MUSE's data has no rephrased questions (TOFU's paraphrased forget "
                   "questions are what it asks)", "fewshot": NO_FEWSHOT},
)  # fmt: skip
# WMDP's domains (MMLU, the utility, is left out); a prompt attack asks with k examples
WMDP_SETS = ("wmdp_bio", "wmdp_chem", "wmdp_cyber")
WMDP_AUDIT = AuditedBenchmark(
    WMDP_SETS, "WMDP sets", WMDP_SETS, ("relearn", "quantize", "fewshot"),
    {"paraphrase": "WMDP has no rephrased questions; its prompt attack is fewshot (k "
                   "in-context examples of the same domain)"},
)  # fmt: skip
# LUME's forget rows (sentence completions and questions) and the holdout
LUME_AUDIT = AuditedBenchmark(
    ("forget", "holdout"), "forget and holdout sets", ("forget",), ("relearn", "quantize"),
    {"paraphrase": "LUME has no rephrased questions", "fewshot": NO_FEWSHOT},
)  # fmt: skip
AUDITED = {"tofu": TOFU_AUDIT, "muse": MUSE_AUDIT, "wmdp": WMDP_AUDIT, "lume": LUME_AUDIT}


def audited(scoring: ScoreSettings) -> AuditedBenchmark:
    return AUDITED[scoring.benchmark.kind]


@dataclass
class RelearnSettings:
    rows: str | None = None  # "start:stop" forget rows trained on (default: by split)
    split: str | None = None  # TOFU: "same-authors" (None) or "other-authors"
    steps: int = 10
    learning_rate: float = 1e-5
    batch_size: int = 4
    lora: bool = False
    seed: int = 42
    max_length: int = 500


@dataclass
class AuditSettings:
    model: str
    scoring: ScoreSettings = field(default_factory=ScoreSettings)  # its output: the runs folder
    # "relearn,quantize" from the command line; None: every attack that applies
    attacks: str | tuple[str, ...] | None = None
    target: str | None = None  # the model before unlearning, or its scoring run / results file
    control: str | None = None  # the retain model: the knowledge attacks run on it too
    control_label: str | None = None  # its name in tables (default: the model's name)
    output: Path = Path("results/audit")
    models_dir: Path | None = None  # attacked models (default: $LM_UNLEARN_CACHE/audit)
    relearn: RelearnSettings = field(default_factory=RelearnSettings)
    bits: str | tuple[int, ...] = QUANTIZE_BITS  # "8,4" from the command line
    fewshot: int = FEWSHOT_EXAMPLES  # the few-shot attack's in-context examples
    base: str | None = None  # base model of an adapter given as MODEL
    command: str | None = None  # the command line, recorded


@dataclass
class Variant:
    """One attacked version: the attack, what it did, and the task options it is scored with."""

    attack: str
    name: str  # relearn, quantize-8bit, quantize-4bit, paraphrase
    settings: dict[str, Any]
    metadata: dict[str, Any]  # task options of the attacked run (rows, questions)
    before_metadata: dict[str, Any]  # task options of the unlearned model's run (same rows)
    scored: str = ""  # the rows or questions scored, when not the usual ones
    title: str = ""  # how tables name it, when the name alone is not enough

    @property
    def shown(self) -> str:
        return self.title or self.name


@dataclass
class Scores:
    metrics: dict[str, Any]
    run: str | None = None  # run folder name (in the runs folder)
    settings_sha256: str | None = None
    note: str = ""
    rows: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict, repr=False)
    seconds: float = 0.0  # the scoring run's own wall time (also when it is reused)

    def describe(self) -> dict[str, Any]:
        return {"run": self.run, "settings_sha256": self.settings_sha256,
                "metrics": self.metrics, **({"note": self.note} if self.note else {})}  # fmt: skip


@dataclass
class Control:
    """The control (the retain model) before and after the same attack, on the same rows."""

    model: str
    before: Scores
    after: Scores
    attacked: Path | None
    name: str = ""  # how tables name it (the model's name, not where it lies)

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "name": self.name, "before": self.before.describe(),
                "after": self.after.describe()}  # fmt: skip


@dataclass
class AttackResult:
    variant: Variant
    before: Scores
    after: Scores
    target: Scores | None
    model: Path | None  # the attacked model (None when the attack changes the questions)
    seconds: float = 0.0  # wall time of this audit's call (runs and models reused: seconds)
    control: Control | None = None
    noise: dict[str, float] = field(default_factory=dict)  # per metric: the gap's noise


@dataclass
class AuditReport:
    rows: list[dict[str, Any]]
    markdown: str
    files: list[Path]
    results: list[AttackResult]


# ---------------------------------------------------------------------- checking the inputs
def parse_attacks(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Attack names from "relearn,quantize" (or a sequence); unknown names are refused."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [item.strip() for item in items if item.strip()]
    unknown = [name for name in names if name not in ATTACKS]
    if unknown or not names:
        given = ", ".join(repr(n) for n in unknown) or "none"
        raise AuditError(f"unknown attack {given}; known attacks: {', '.join(ATTACKS)}")
    return tuple(dict.fromkeys(names))


def parse_bits(bits: str | tuple[int, ...]) -> tuple[int, ...]:
    """Weight bits of the quantize attack: "8,4" (or a sequence), each 8 or 4."""
    items = bits.split(",") if isinstance(bits, str) else list(bits)
    try:
        parsed = tuple(dict.fromkeys(int(str(b).strip()) for b in items if str(b).strip()))
    except ValueError:
        parsed = ()
    if not parsed or set(parsed) - set(QUANTIZE_BITS):
        raise AuditError(f"--bits takes 8 and/or 4 (e.g. 8,4), got {bits!r}")
    return parsed


def forget_row_count(split: str, data_dir: str | None) -> int:
    from tofu_tasks import data
    from tofu_tasks.eval_sets import FORGET

    return len(data.read_split(FORGET.source_file(split), data_dir))


def muse_relearn_rows(text: str | None, total: int) -> tuple[int, int]:
    """The forget documents a MUSE model relearns: ``start:stop`` of the corpus's ``raw/forget``
    split, by default its first half (the forget criteria are scored whole)."""
    if text is None:
        return 0, max(1, total // 2)
    try:
        rows = slice_range(text, total)
        start, stop = rows.start, rows.stop
    except RowSliceError:
        start = stop = -1
    if not 0 <= start < stop <= total:
        raise AuditError(
            f"--relearn-rows must be 'start:stop' within the {total} forget documents (e.g. "
            f"':{max(1, total // 2)}'), got {text!r}"
        )
    return start, stop


def relearn_rows(
    text: str | None, total: int, split: str | None = None
) -> tuple[list[int], list[int]]:
    """(rows trained on, rows scored). ``text``: a slice touching one end of the forget split,
    the rest scored. Else by ``split``: ``same-authors`` trains on the first half of each
    author's rows and scores the second half; ``other-authors`` trains on the first half of the
    authors and scores the others."""
    from tofu_tasks.eval_sets import ROWS_PER_AUTHOR

    if text is not None:
        (a, b), (c, d) = _explicit_rows(text, total)
        return list(range(a, b)), list(range(c, d))
    split = split or RELEARN_SPLITS[0]
    if split not in RELEARN_SPLITS:
        raise AuditError(
            f"--relearn-split must be one of {', '.join(RELEARN_SPLITS)}, got {split!r}"
        )
    authors = total // ROWS_PER_AUTHOR
    if total % ROWS_PER_AUTHOR or (split == "other-authors" and authors < 2):
        raise AuditError(
            f"--relearn-split {split} needs whole authors of {ROWS_PER_AUTHOR} rows (and two "
            f"or more for other-authors); the forget split has {total} rows: give --relearn-rows"
        )
    if split == "other-authors":
        cut = (authors // 2) * ROWS_PER_AUTHOR
        return list(range(cut)), list(range(cut, total))
    half = ROWS_PER_AUTHOR // 2
    starts = range(0, total, ROWS_PER_AUTHOR)
    trained = [row for start in starts for row in range(start, start + half)]
    scored = [row for start in starts for row in range(start + half, start + ROWS_PER_AUTHOR)]
    return trained, scored


def _explicit_rows(text: str, total: int) -> tuple[tuple[int, int], tuple[int, int]]:
    try:
        rows = slice_range(text, total)
        start, stop = rows.start, rows.stop
    except RowSliceError:
        start = stop = -1
    if not 0 <= start < stop <= total or (start, stop) == (0, total):
        raise AuditError(
            f"--relearn-rows must be 'start:stop' within the {total} forget rows, leaving rows to "
            f"score (e.g. ':{total // 2}'), got {text!r}"
        )
    if start != 0 and stop != total:
        raise AuditError(
            f"--relearn-rows {text!r} must start at 0 or end at {total}: the other rows, scored "
            f"after relearning, must form one slice"
        )
    return (start, stop), ((stop, total) if start == 0 else (0, start))


def require_bitsandbytes() -> None:
    if importlib.util.find_spec("bitsandbytes") is None:
        raise AuditError(f"the quantize attack needs the bitsandbytes package: {BITSANDBYTES}")


def check_settings(settings: AuditSettings) -> None:
    """Everything that can be checked before any work: nothing is written when this fails."""
    benchmark = audited(settings.scoring)
    given = settings.attacks
    settings.attacks = parse_attacks(benchmark.attacks if given is None else given)
    for attack in settings.attacks:
        if why := benchmark.not_applicable.get(attack):
            raise AuditError(
                f"the {attack} attack does not apply to {settings.scoring.split}: {why}; its "
                f"attacks: {', '.join(benchmark.attacks)}"
            )
    relearn, metadata = settings.relearn, settings.scoring.metadata
    if "quantize" in settings.attacks:
        settings.bits = parse_bits(settings.bits)
        require_bitsandbytes()
    if "relearn" in settings.attacks:
        if relearn.steps < 1 or relearn.batch_size < 1 or relearn.learning_rate <= 0:
            raise AuditError("relearning needs steps ≥ 1, batch size ≥ 1 and a positive lr")
        if settings.scoring.benchmark.kind != "tofu" and relearn.split is not None:
            raise AuditError(
                f"--relearn-split divides TOFU's authors; {settings.scoring.split} relearns "
                f"forget text (--relearn-rows start:stop)"
            )
        if relearn.split not in (None, *RELEARN_SPLITS):
            raise AuditError(
                f"--relearn-split must be one of {', '.join(RELEARN_SPLITS)}, got {relearn.split!r}"
            )
        if metadata.get("forget_rows") and settings.scoring.benchmark.kind == "tofu":
            raise AuditError("relearn chooses the scored forget rows itself: drop forget_rows")
        if metadata.get("prompt_template"):
            raise AuditError("relearn trains in a named prompt format, not a prompt_template")
    if "paraphrase" in settings.attacks and metadata.get("forget_question"):
        raise AuditError("paraphrase sets forget_question itself: drop it from --metadata")
    if "fewshot" in settings.attacks:
        if metadata.get("fewshot"):
            raise AuditError("the fewshot attack sets the task option fewshot: drop it")
        if (
            isinstance(settings.fewshot, bool)
            or not isinstance(settings.fewshot, int)
            or settings.fewshot < 1
        ):
            raise AuditError(f"--fewshot-examples must be 1 or more, got {settings.fewshot!r}")


def target_is_run(target: str) -> bool:
    """A scoring run folder or an lm-eval results file (not a model folder)."""
    path = Path(target).expanduser()
    if path.is_file():
        return path.suffix == ".json"
    if not path.is_dir():
        return False
    is_model = (path / "config.json").is_file() or (path / "adapter_config.json").is_file()
    return not is_model and any(path.glob("**/results_*.json"))
