"""``lm-unlearn audit``: does the forgetting hold?

An unlearned model may only hide what it was asked to forget. The audit attacks it three ways and
scores each attacked version like any other model, on the same rows as the model before the attack:

``relearn``     fine-tune on one part of the forget set for a few steps (default 10, lr 1e-5,
                constant rate, batch 4, full weights or ``--relearn-lora``), then score the
                *other* part: does learning some facts bring back the rest? ``same-authors``
                (default) trains on the first half of each author's rows and scores the second
                half; ``other-authors`` trains on the first half of the authors and scores the
                others; ``--relearn-rows`` picks the trained slice by hand. With ``--control``
                (the retain model, which never learned the forget rows) the same relearning
                runs on it too: relearning can teach facts a model never knew, so what it
                brings back counts only beyond what it gives the control.
``quantize``    the weights in 8 bits (LLM.int8) and in 4 bits (NF4), with bitsandbytes on CPU and
                on CUDA alike: does rounding the weights undo the small updates of unlearning?
``paraphrase``  the forget questions as TOFU rephrased them (task option
                ``forget_question: "paraphrased"``): does forgetting survive other wording?

Every score is a normal ``lm-unlearn score`` run (manifest, settings hash, skipped when already
made) in the runs folder a leaderboard reads; an attacked run's manifest says the attack, its
settings and the input model's fingerprint. Attacked models are built once and kept, named by the
hash of the input model and the attack's settings. The audit writes one table (``audit.md``,
``audit.csv``, ``audit.json``; printed too): each forget metric before and after each attack, and,
with ``--target`` (the model before unlearning, or its scoring run), the recovery
(after − before) / (target − before), N/A where target − before is within its noise (twice the
standard deviation of that gap over bootstrap draws of the scored rows).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness_ext.metrics.recovery import forget_metrics
from harness_ext.row_slices import RowSliceError, row_slices, slice_range
from harness_ext.workflows import robustness_table
from harness_ext.workflows.score import (
    MANIFEST,
    PARTIAL_PREFIX,
    ModelSpec,
    ScoreError,
    ScoreSettings,
    detect_prompt_format,
    eval_data_sha256,
    requested_prompt_format,
    resolve_model,
    score_model,
    slug,
    tokenizer_source,
)
from harness_ext.workflows.table_cells import md_text

ATTACKS = ("relearn", "quantize", "paraphrase")
AUDIT_SETS = ("forget", "holdout")  # the sets the audit scores unless --metadata names others
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


@dataclass
class RelearnSettings:
    rows: str | None = None  # "start:stop" forget rows trained on (default: by split)
    split: str = "same-authors"  # or "other-authors"
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
    attacks: str | tuple[str, ...] = ATTACKS  # "relearn,quantize" from the command line
    target: str | None = None  # the model before unlearning, or its scoring run / results file
    control: str | None = None  # the retain model: the knowledge attacks run on it too
    control_label: str | None = None  # its name in tables (default: the model's name)
    output: Path = Path("results/audit")
    models_dir: Path | None = None  # attacked models (default: $LM_UNLEARN_CACHE/audit)
    relearn: RelearnSettings = field(default_factory=RelearnSettings)
    bits: str | tuple[int, ...] = QUANTIZE_BITS  # "8,4" from the command line
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


def relearn_rows(
    text: str | None, total: int, split: str = "same-authors"
) -> tuple[list[int], list[int]]:
    """(rows trained on, rows scored). ``text``: a slice touching one end of the forget split,
    the rest scored. Else by ``split``: ``same-authors`` trains on the first half of each
    author's rows and scores the second half; ``other-authors`` trains on the first half of the
    authors and scores the others."""
    from tofu_tasks.eval_sets import ROWS_PER_AUTHOR

    if text is not None:
        (a, b), (c, d) = _explicit_rows(text, total)
        return list(range(a, b)), list(range(c, d))
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
    settings.attacks = parse_attacks(settings.attacks)
    relearn, metadata = settings.relearn, settings.scoring.metadata
    if "quantize" in settings.attacks:
        settings.bits = parse_bits(settings.bits)
        require_bitsandbytes()
    if "relearn" in settings.attacks:
        if relearn.steps < 1 or relearn.batch_size < 1 or relearn.learning_rate <= 0:
            raise AuditError("relearning needs steps ≥ 1, batch size ≥ 1 and a positive lr")
        if relearn.split not in RELEARN_SPLITS:
            raise AuditError(
                f"--relearn-split must be one of {', '.join(RELEARN_SPLITS)}, got {relearn.split!r}"
            )
        if metadata.get("forget_rows"):
            raise AuditError("relearn chooses the scored forget rows itself: drop forget_rows")
        if metadata.get("prompt_template"):
            raise AuditError("relearn trains in a named prompt format, not a prompt_template")
    if "paraphrase" in settings.attacks and metadata.get("forget_question"):
        raise AuditError("paraphrase sets forget_question itself: drop it from --metadata")


def target_is_run(target: str) -> bool:
    """A scoring run folder or an lm-eval results file (not a model folder)."""
    path = Path(target).expanduser()
    if path.is_file():
        return path.suffix == ".json"
    if not path.is_dir():
        return False
    is_model = (path / "config.json").is_file() or (path / "adapter_config.json").is_file()
    return not is_model and any(path.glob("**/results_*.json"))


# ---------------------------------------------------------------------- the attacks
def plan(settings: AuditSettings) -> list[Variant]:
    # The table holds forget metrics only: the utility sets are not scored unless asked for.
    base = {"sets": list(AUDIT_SETS), **settings.scoring.metadata}
    variants: list[Variant] = []
    for attack in settings.attacks:
        if attack == "relearn":
            variants.append(relearn_variant(settings, base))
        elif attack == "quantize":
            variants += [quantize_variant(settings, base, bits) for bits in settings.bits]
        else:
            variants.append(paraphrase_variant(base))
    return variants


def paraphrase_variant(base: dict[str, Any]) -> Variant:
    """The same model asked TOFU's rephrased forget questions; before: the original ones."""
    asked = {"forget_question": "paraphrased"}
    return Variant("paraphrase", "paraphrase", asked, {**base, **asked}, base,
                   scored="paraphrased questions")  # fmt: skip


def relearn_variant(settings: AuditSettings, base: dict[str, Any]) -> Variant:
    split, r = settings.scoring.split, settings.relearn
    total = forget_row_count(split, base.get("data_dir"))
    trained, scored_rows = relearn_rows(r.rows, total, r.split)
    trained_slices, scored_slices = row_slices(trained), row_slices(scored_rows)
    scored_text = ",".join(f"{a}:{b}" for a, b in scored_slices)
    scored = {**base, "forget_rows": scored_text}
    which = "rows given by hand" if r.rows is not None else r.split
    what = {"split": which,
            "trained_on": ",".join(f"{split}[{a}:{b}]" for a, b in trained_slices),
            "scored_rows": scored_text, "steps": r.steps,
            "learning_rate": r.learning_rate, "lr_schedule": "constant, no warm-up",
            "batch_size": r.batch_size, "weights": "LoRA (r 8, alpha 32)" if r.lora else "all",
            "seed": r.seed, "max_length": r.max_length}  # fmt: skip
    shown = ", ".join(f"{a}-{b - 1}" for a, b in trained_slices)
    title = f"relearn ({which}: trained rows {shown}), {r.steps} steps, lr {r.learning_rate:g}" + (
        ", LoRA" if r.lora else ""
    )
    return Variant("relearn", "relearn", what, scored, scored, f"rows {scored_text}", title)


def quantize_variant(settings: AuditSettings, base: dict[str, Any], bits: int) -> Variant:
    import bitsandbytes

    what = {"bits": bits, "library": f"bitsandbytes {bitsandbytes.__version__}",
            "scheme": QUANTIZE_SCHEMES[bits], "device": quantize_device(settings)}  # fmt: skip
    scored = "" if base == settings.scoring.metadata else "forget and holdout sets"
    return Variant("quantize", f"quantize-{bits}bit", what, base, base, scored)


def quantize_device(settings: AuditSettings) -> str:
    from harness_ext.metrics.output_quality import resolve_device

    return str(resolve_device(settings.scoring.device))


def models_dir(settings: AuditSettings) -> Path:
    from harness_ext.assets import cache_dir

    return Path(settings.models_dir) if settings.models_dir else cache_dir() / "audit"


def model_folder(settings: AuditSettings, spec: ModelSpec, variant: Variant) -> Path:
    """Where an attacked model lives: named by the input model and the attack's settings."""
    from harness_ext.provenance import package_versions
    from harness_ext.workflows.score import model_identity

    key = {"input": model_identity(spec.fingerprint), "variant": variant.name,
           "settings": variant.settings, "transformers": package_versions().get("transformers")}  # fmt: skip
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return models_dir(settings) / f"{slug(spec.name, 40)}-{variant.name}-{digest[:12]}"


def write_attack_card(folder: Path, spec: ModelSpec, variant: Variant, seconds: float) -> None:
    from harness_ext.provenance import package_versions, write_json_atomic

    card = {"attack": variant.attack, "variant": variant.name, "settings": variant.settings,
            "input_model": {"given": spec.source, "fingerprint": spec.fingerprint},
            "versions": package_versions(), "build_seconds": round(seconds, 1)}  # fmt: skip
    write_json_atomic(folder / ATTACK_CARD, card)


def relearned_model(settings: AuditSettings, spec: ModelSpec, variant: Variant) -> Path:
    """Fine-tune the unlearned model on the relearn rows (``lm-unlearn finetune``'s code)."""
    from unlearn_methods.finetune import FinetuneOptions, finetune

    folder = model_folder(settings, spec, variant)
    if (folder / ATTACK_CARD).is_file():
        print(f"relearn: reusing {folder}")
        return folder
    r, scoring = settings.relearn, settings.scoring
    prompt_format, _ = detect_prompt_format(spec, requested_prompt_format(scoring))
    options = FinetuneOptions(
        model=spec.peft or spec.pretrained, output=str(folder),
        data=variant.settings["trained_on"], epochs=1.0, learning_rate=r.learning_rate,
        per_device_batch_size=r.batch_size, effective_batch_size=r.batch_size,
        max_length=r.max_length, prompt_format=prompt_format, lora=r.lora, seed=r.seed,
        data_dir=scoring.metadata.get("data_dir"), pad_token=_pad_token(spec), overwrite=True,
        training_args={"max_steps": r.steps, "lr_scheduler_type": "constant", "warmup_steps": 0},
    )  # fmt: skip
    print(f"relearn: {r.steps} steps on {options.data} at lr {r.learning_rate:g} -> {folder}")
    started = time.time()
    finetune(options)
    write_attack_card(folder, spec, variant, time.time() - started)
    return folder


def _pad_token(spec: ModelSpec) -> str | None:
    """'eos' when the tokenizer has no pad token (padding only; padded labels are masked)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source(spec))
    return None if tokenizer.pad_token is not None else "eos"


def quantized_model(settings: AuditSettings, spec: ModelSpec, variant: Variant) -> Path:
    """The model with bitsandbytes weights, saved (config.json carries the quantization config,
    so lm-eval and transformers load it quantised)."""
    folder = model_folder(settings, spec, variant)
    if (folder / ATTACK_CARD).is_file():
        print(f"{variant.name}: reusing {folder}")
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f"{PARTIAL_PREFIX}{folder.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        print(f"{variant.name}: {variant.settings['scheme']} -> {folder}")
        started = time.time()
        _save_quantized(spec, variant, staging)
        write_attack_card(staging, spec, variant, time.time() - started)
        shutil.rmtree(folder, ignore_errors=True)  # a folder left without its card
        os.rename(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def bnb_config(bits: int, device: str):
    import torch
    from transformers import BitsAndBytesConfig

    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16 if bf16 else torch.float32,
    )


def _save_quantized(spec: ModelSpec, variant: Variant, staging: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness_ext.model_files import add_reader_compatibility

    device = variant.settings["device"]
    config = bnb_config(variant.settings["bits"], device)
    source = spec.pretrained
    if spec.peft:  # an adapter: merged into its base first, then quantised
        source = str(staging / "merged")
        _merge_adapter(spec, Path(source))
    model = AutoModelForCausalLM.from_pretrained(
        source, quantization_config=config, device_map={"": device}, dtype="auto"
    )
    model.save_pretrained(staging)
    AutoTokenizer.from_pretrained(tokenizer_source(spec)).save_pretrained(staging)
    add_reader_compatibility(staging)
    shutil.rmtree(staging / "merged", ignore_errors=True)


def _merge_adapter(spec: ModelSpec, folder: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(spec.pretrained)
    PeftModel.from_pretrained(base, spec.peft).merge_and_unload().save_pretrained(folder)


def attacked_model(settings: AuditSettings, spec: ModelSpec, variant: Variant) -> Path | None:
    if variant.attack == "relearn":
        return relearned_model(settings, spec, variant)
    if variant.attack == "quantize":
        return quantized_model(settings, spec, variant)
    return None  # paraphrase changes the questions, not the model


# ---------------------------------------------------------------------- scoring
def score(
    model: str,
    settings: AuditSettings,
    metadata: dict[str, Any],
    *,
    attack: dict[str, Any] | None = None,
    labels: tuple[str | None, str | None] = (None, None),
    base: str | None = None,
    is_target: bool = False,
) -> Scores:
    """A normal ``lm-unlearn score`` run; returns its forget metrics and where it lives."""
    from harness_ext.lm_eval_plugin.results import latest_results, task_metrics

    scoring = replace(settings.scoring, metadata=metadata, attack=attack, label=labels[0],
                      base_label=labels[1])  # fmt: skip
    if is_target:  # the model before unlearning is not compared with its own outputs
        scoring.pre_unlearning_reference = None
    if metadata.get("forget_question") == "paraphrased":
        scoring.retain_reference = None  # its rows are asked in the original words
    outcome = score_model(model, scoring, base=base)
    manifest = json.loads((outcome.run_dir / MANIFEST).read_text(encoding="utf-8"))
    metrics = task_metrics(latest_results(outcome.run_dir), scoring.task)
    rows = run_samples(_results_file(outcome.run_dir), scoring.task)
    return Scores(
        forget_metrics(metrics), outcome.run_dir.name, manifest.get("settings_sha256"), rows=rows,
        seconds=float(manifest.get("wall_seconds") or 0.0),
    )  # fmt: skip


def role(variant: Variant, name: str) -> dict[str, Any]:
    """The attack section of a run that is not itself attacked but scored for the audit. It
    names no attack: every attack that scores the same rows shares the run."""
    return {"name": "none", "role": name}


def score_before(settings: AuditSettings, spec: ModelSpec, variant: Variant) -> Scores:
    """The unlearned model on the attacked run's rows (original questions). On the usual rows it
    is an ordinary scoring run, the same as ``lm-unlearn score MODEL`` makes; on fewer rows, the
    ordinary run's per-row numbers over those rows when that run exists (no second scoring)."""
    usual = variant.before_metadata == settings.scoring.metadata
    made = None if usual else usual_run(settings, settings.model, settings.base)
    if made and (derived := scores_from_run(made, settings, variant.before_metadata)):
        return derived
    label = None if usual else f"{spec.name} ({rows_scored(variant.before_metadata)})"
    return score(
        settings.model, settings, variant.before_metadata,
        attack=None if usual else role(variant, "before"),
        labels=(label or settings.scoring.label, spec.base_name if label else None),
        base=settings.base,
    )  # fmt: skip


def usual_run(
    settings: AuditSettings, model: str, base: str | None = None, *, as_target: bool = False
) -> Path | None:
    """The model's ordinary scoring run in the runs folder (``lm-unlearn score`` with the audit's
    task options and references), if one was made. A control (``as_target``) is also looked up
    as scored without references, as a retain model usually is."""
    from harness_ext.workflows.score import find_scored, settings_hash, settings_key

    spec = resolve_model(model, base)
    scoring = replace(settings.scoring, attack=None, label=None, base_label=None)
    candidates = [scoring]
    if as_target:
        scoring = replace(scoring, pre_unlearning_reference=None)
        candidates = [scoring, replace(scoring, retain_reference=None)]
    prompt_format, _ = detect_prompt_format(spec, requested_prompt_format(scoring))
    for candidate in candidates:
        key = settings_key(spec, candidate, prompt_format)
        if found := find_scored(Path(candidate.output), settings_hash(key)):
            return found
    return None


def task_aggregations(wanted) -> dict[str, Any]:
    """The task's aggregation function of each metric named in ``wanted`` that has one."""
    from tofu_tasks.metric_list import AGGREGATIONS, metric_list

    return {
        entry["metric"]: AGGREGATIONS[entry["aggregation"]]
        for entry in metric_list()
        if wanted(entry["metric"]) and entry["aggregation"] in AGGREGATIONS
    }


def scores_from_run(run: Path, settings: AuditSettings, metadata: dict[str, Any]) -> Scores | None:
    """A run's (its folder's, or its results file's) forget metrics on the rows ``metadata``
    selects, aggregated from its per-row numbers exactly as the task aggregates them (the same
    values a run of those rows alone gives); None when the run lacks one of the rows or asked it
    in other words."""
    from tofu_tasks.documents import eval_docs
    from tofu_tasks.options import TaskOptions

    task = settings.scoring.task
    rows = run_samples(_results_file(run), task)
    options = TaskOptions.from_metadata({**metadata, "forget_split": settings.scoring.split})
    # forget metrics are aggregated over the forget rows alone: the other sets need not be there
    wanted = {(d["set"], d["row"]): d for d in eval_docs(options) if d["set"] == "forget"}
    if any(
        key not in rows or rows[key].get("doc", {}).get("question") != doc.get("question")
        for key, doc in wanted.items()
    ):
        return None
    subset = {key: rows[key] for key in wanted}
    metrics = {}
    for name, aggregate in task_aggregations(lambda name: name.startswith("forget_")).items():
        if values := [row[name] for row in subset.values() if name in row]:
            metrics[name] = aggregate(values)
    manifest_file = run / MANIFEST
    digest = None
    if manifest_file.is_file():
        digest = json.loads(manifest_file.read_text(encoding="utf-8")).get("settings_sha256")
    note = f"{rows_scored(metadata)}: aggregated from this run's per-row numbers"
    return Scores(forget_metrics(metrics), run.name, digest, note, rows=subset)


def rows_scored(metadata: dict[str, Any]) -> str:
    """How a before run's rows differ from the usual ones (several attacks share it)."""
    from tofu_tasks.data import set_names

    sets = set_names(metadata.get("sets") or [])
    if not sets:
        named = None
    elif list(sets) == list(AUDIT_SETS):
        named = "forget and holdout sets"
    else:
        named = f"sets {', '.join(sets)}"
    if metadata.get("forget_rows"):
        return f"rows {metadata['forget_rows']}" + (f" of the {named}" if named else "")
    return named or "other rows"


def score_target(settings: AuditSettings, variant: Variant) -> Scores | None:
    """The model before unlearning on the attacked run's rows and questions."""
    if not settings.target:
        return None
    if target_is_run(settings.target):
        return target_from_run(Path(settings.target), settings, variant.metadata)
    usual = variant.metadata == settings.scoring.metadata
    spec = resolve_model(settings.target)
    return score(
        settings.target, settings, variant.metadata,
        attack=None if usual else role(variant, "target"),
        labels=(None, None) if usual else (f"{spec.name} ({variant.scored})", spec.base_name),
        is_target=True,
    )  # fmt: skip


def score_after(
    settings: AuditSettings,
    spec: ModelSpec,
    variant: Variant,
    model: Path | None,
    before: Scores,
    target: Scores | None,
    noise: dict[str, float] | None = None,
    control: Control | None = None,
) -> Scores:
    attack = {
        "name": variant.attack, "variant": variant.name, "role": "after",
        "title": variant.shown, "settings": variant.settings, "input_model": input_model(spec, settings.model),
        "before": before.describe(), "target": _target_section(settings, target),
        "gap_noise": noise or None, "control": control.describe() if control else None,
        "command": settings.command,
    }  # fmt: skip
    return score(
        str(model) if model else settings.model, settings, variant.metadata,
        attack=_portable(attack, settings), labels=(f"{spec.name} + {variant.name}", spec.base_name),
        base=None if model else settings.base,
    )  # fmt: skip


def input_model(spec: ModelSpec, given: str) -> dict[str, Any]:
    return {"given": given, "label": spec.label, "name": spec.name,
            "base_name": spec.base_name, "fingerprint": spec.fingerprint}  # fmt: skip


def _target_section(settings: AuditSettings, target: Scores | None) -> dict[str, Any] | None:
    return {"source": settings.target, **target.describe()} if target else None


def _portable(attack: dict[str, Any], settings: AuditSettings) -> dict[str, Any]:
    """Local paths in the attack section, relative to the runs folder (as in the manifest)."""
    from harness_ext.provenance import portable_paths, relative_stand_ins

    spec = resolve_model(settings.model, settings.base)
    paths = [settings.model, spec.pretrained, spec.peft, settings.target, settings.control,
             settings.output, settings.scoring.output, settings.models_dir]  # fmt: skip
    return portable_paths(attack, relative_stand_ins(paths, settings.scoring.output))


# ---------------------------------------------------------------------- a target run's scores
def target_from_run(path: Path, settings: AuditSettings, metadata: dict[str, Any]) -> Scores:
    """The target's forget metrics from its scoring run: the run's own when it scored exactly
    these forget rows, else aggregated from its per-row numbers over the rows wanted."""
    from harness_ext.lm_eval_plugin.results import task_metrics

    task = settings.scoring.task
    results_file = _results_file(path)
    results = json.loads(results_file.read_text(encoding="utf-8"))
    if task not in results.get("results", {}):
        raise AuditError(f"--target {path}: its results have no {task} scores")
    wanted = _forget_keys(settings, metadata)
    samples = _forget_samples(results_file, task)
    if set(wanted) == set(samples):
        rows = run_samples(results_file, task)
        return Scores(forget_metrics(task_metrics(results, task)), str(path), rows=rows)
    derived = scores_from_run(path, settings, metadata)
    if derived is None:
        note = "the target run did not score these forget rows and questions"
        return Scores({}, str(path), note=note)
    derived.run = str(path)
    return derived


def _results_file(path: Path) -> Path:
    if path.is_file():
        return path
    files = sorted(path.glob("**/results_*.json"), key=lambda p: p.stat().st_mtime)
    return files[-1]


def _forget_keys(settings: AuditSettings, metadata: dict[str, Any]) -> list[tuple[int, str]]:
    from tofu_tasks.documents import eval_docs
    from tofu_tasks.options import TaskOptions

    options = TaskOptions.from_metadata({**metadata, "forget_split": settings.scoring.split})
    return [(d["row"], d["question"]) for d in eval_docs(options) if d["set"] == "forget"]


def run_samples(results_file: Path, task: str) -> dict[tuple[str, int], dict[str, Any]]:
    """Every scored document of a run's samples file by (set, row): its per-row values."""
    found = _samples_file(results_file, task)
    samples = {}
    for line in found.read_text(encoding="utf-8").splitlines():
        sample = json.loads(line) if line.strip() else {}
        doc = sample.get("doc") or {}
        if "set" in doc:
            samples[(doc["set"], doc["row"])] = sample
    return samples


def _samples_file(results_file: Path, task: str) -> Path:
    stamp = results_file.stem.removeprefix("results_")
    found = results_file.parent / f"samples_{task}_{stamp}.jsonl"
    if not found.is_file():
        candidates = sorted(results_file.parent.glob(f"samples_{task}_*.jsonl"))
        if not candidates:
            raise AuditError(f"{results_file}: no samples file beside it (--log_samples)")
        found = candidates[-1]
    return found


def _forget_samples(results_file: Path, task: str) -> dict[tuple[int, str], dict[str, Any]]:
    found = _samples_file(results_file, task)
    samples = {}
    for line in found.read_text(encoding="utf-8").splitlines():
        sample = json.loads(line) if line.strip() else {}
        doc = sample.get("doc") or {}
        if doc.get("set") == "forget":
            samples[(doc["row"], doc["question"])] = sample
    return samples


# ---------------------------------------------------------------------- the audit
def run_audit(settings: AuditSettings) -> AuditReport:
    """Attack the model, score each attacked version, write and return the table."""
    started = time.time()
    check_settings(settings)
    spec = _input_spec(settings)
    variants = plan(settings)
    _check_plan(settings, variants)
    results = []
    with _quiet_bitsandbytes():
        for variant in variants:
            print(f"\n== audit: {variant.name} ==", flush=True)
            results.append(run_attack(settings, spec, variant))
    return write_report(settings, spec, results, time.time() - started)


def _input_spec(settings: AuditSettings) -> ModelSpec:
    spec = resolve_model(settings.model, settings.base)
    if settings.scoring.label:
        spec.name = settings.scoring.label
    if "relearn" in settings.attacks and settings.relearn.lora and spec.peft:
        raise AuditError(
            "--relearn-lora on an adapter: give the merged model, or relearn all weights"
        )
    if settings.target and not target_is_run(settings.target):
        try:  # a missing target fails here, before any work
            resolve_model(settings.target)
        except ScoreError as err:
            raise AuditError(f"--target: {err}") from err
    if settings.control:
        if target_is_run(settings.control):
            raise AuditError("--control takes a model (the retain model), not a scoring run")
        try:
            resolve_model(settings.control)
        except ScoreError as err:
            raise AuditError(f"--control: {err}") from err
    return spec


def _check_plan(settings: AuditSettings, variants: list[Variant]) -> None:
    """The data and task options of every run, checked before any model is touched."""
    from tofu_tasks.data import TofuDataError

    for variant in variants:
        for metadata in (variant.metadata, variant.before_metadata):
            try:
                eval_data_sha256(replace(settings.scoring, metadata=metadata))
            except (TofuDataError, ScoreError) as err:
                raise AuditError(f"{variant.name}: {err}") from err
    if settings.target and target_is_run(settings.target):
        task, results_file = settings.scoring.task, _results_file(Path(settings.target))
        results = json.loads(results_file.read_text(encoding="utf-8"))
        if task not in results.get("results", {}):
            raise AuditError(f"--target {settings.target}: its results have no {task} scores")
        _forget_samples(results_file, task)  # its per-row numbers are there


@contextmanager
def _quiet_bitsandbytes() -> Iterator[None]:
    """bitsandbytes logs a warning at every 8-bit matrix product on float32 inputs."""
    logger = logging.getLogger("bitsandbytes")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_attack(settings: AuditSettings, spec: ModelSpec, variant: Variant) -> AttackResult:
    started = time.time()
    before = score_before(settings, spec, variant)
    target = score_target(settings, variant)
    noise = gap_noise(before, target) if target else {}
    control = run_control(settings, variant) if variant.attack in KNOWLEDGE_ATTACKS else None
    model = attacked_model(settings, spec, variant)
    after = score_after(settings, spec, variant, model, before, target, noise, control)
    seconds = round(time.time() - started, 1)
    return AttackResult(variant, before, after, target, model, seconds, control, noise)


def gap_noise(before: Scores, target: Scores) -> dict[str, float]:
    """Per forget metric: the noise of target − before over the rows both scored."""
    from harness_ext.metrics import noise

    wanted = set(before.metrics) & set(target.metrics)
    aggregations = task_aggregations(wanted.__contains__)
    return noise.gap_noise(before.rows, target.rows, aggregations)


def run_control(settings: AuditSettings, variant: Variant) -> Control | None:
    """The same attack on the control (the retain model), scored on the same rows."""
    if not settings.control:
        return None
    spec = resolve_model(settings.control)
    if settings.control_label:
        spec.name = settings.control_label
    rows = rows_scored(variant.before_metadata)
    made = usual_run(settings, settings.control, as_target=True)
    before = made and scores_from_run(made, settings, variant.before_metadata)
    if not before:
        before = score(
            settings.control, settings, variant.before_metadata,
            attack={"name": "none", "role": "control"},
            labels=(f"{spec.name} ({rows})", spec.base_name), is_target=True,
        )  # fmt: skip
    model = attacked_model(settings, spec, variant)
    attack = {"name": variant.attack, "variant": variant.name, "role": "control",
              "title": variant.shown, "settings": variant.settings,
              "input_model": input_model(spec, settings.control),
              "command": settings.command}  # fmt: skip
    after = score(
        str(model) if model else settings.control, settings, variant.metadata,
        attack=_portable(attack, settings),
        labels=(f"{spec.name} + {variant.name} (control)", spec.base_name), is_target=True,
    )  # fmt: skip
    return Control(settings.control, before, after, model, spec.label)


# ---------------------------------------------------------------------- the table
def table(spec: ModelSpec, results: list[AttackResult]) -> list[dict[str, Any]]:
    rows = []
    for result in results:
        runs = {"before_run": result.before.run or "", "after_run": result.after.run or "",
                "target_run": (result.target.run or "") if result.target else ""}  # fmt: skip
        target = result.target.metrics if result.target else None
        control = result.control
        pair = (control.before.metrics, control.after.metrics) if control else None
        if control:
            runs["control_runs"] = f"{control.before.run} → {control.after.run}"
        rows += robustness_table.table_rows(
            spec.label, result.variant.shown, result.before.metrics, result.after.metrics,
            target, result.noise, pair, variant=result.variant.name, **runs,
        )  # fmt: skip
    return rows


def to_markdown(
    settings: AuditSettings, spec: ModelSpec, rows: list[dict], results: list[AttackResult]
) -> str:
    lines = [f"# lm-unlearn audit: {spec.label} · {settings.scoring.split}", "",
             f"Runs in `{settings.scoring.output}`; target (before unlearning): "
             f"{settings.target or 'not given (no recovery)'}.", "",
             robustness_table.markdown(rows), "", "Attacks:", ""]  # fmt: skip
    for result in results:
        v = result.variant
        what = ", ".join(f"{k} {val}" for k, val in v.settings.items())
        scored = f"; scored on {v.scored}" if v.scored else ""
        took = f" ({work_seconds(result)})"
        control = f"; control: the same on {result.control.name}" if result.control else ""
        lines.append(f"- {md_text(v.name)}: {md_text(what)}{scored}{md_text(control)}{took}")
    lines += ["", *RECOVERY_NOTE]
    if any(r.variant.attack in KNOWLEDGE_ATTACKS for r in results) and not settings.control:
        lines.append(
            "No control was given (--control, the retain model): relearning can teach facts a "
            "model never knew, so its recovery alone overstates what came back."
        )
    return "\n".join(lines)


def work_seconds(result: AttackResult) -> str:
    """What the attack cost when it was made (the same when its models and runs are reused):
    building the attacked models (from their cards) and scoring them (from the runs)."""
    models = [result.model] + ([result.control.attacked] if result.control else [])
    build = 0.0
    for folder in (m for m in models if m is not None):
        card = Path(folder) / ATTACK_CARD
        if card.is_file():
            build += float(json.loads(card.read_text(encoding="utf-8")).get("build_seconds") or 0)
    runs = [result.after] + (
        [result.control.before, result.control.after] if result.control else []
    )
    scoring = sum(r.seconds for r in runs)
    return (
        f"{build:.0f} s to build, {scoring:.0f} s to score"
        if build
        else f"{scoring:.0f} s to score"
    )


RECOVERY_NOTE = (
    "gain = after − before. recovery = (after − before) / (target − before): 0 nothing came "
    "back, 1 all; N/A where target − before is within its noise (gap_noise: twice the "
    "standard deviation of that gap over 200 bootstrap draws of the scored rows).",
    "control_gain: the same attack's gain on the control (the retain model, which never "
    "learned the forget rows); difference = gain − control_gain, what the attack brought back "
    "beyond what it teaches any model.",
)


def to_json(
    settings: AuditSettings,
    spec: ModelSpec,
    rows: list[dict],
    results: list[AttackResult],
    seconds: float,
) -> dict[str, Any]:
    from harness_ext.provenance import git_commit, package_versions

    attacks = [
        {"attack": r.variant.attack, "variant": r.variant.name, "settings": r.variant.settings,
         "scored": r.variant.scored or "the usual rows", "model": str(r.model) if r.model else None,
         "before": r.before.describe(), "after": r.after.describe(), "wall_seconds": r.seconds,
         "target": r.target.describe() if r.target else None, "gap_noise": r.noise or None,
         "control": r.control.describe() if r.control else None}
        for r in results
    ]  # fmt: skip
    return {"format": AUDIT_FORMAT, "model": input_model(spec, settings.model),
            "split": settings.scoring.split, "target": settings.target,
            "runs": str(settings.scoring.output), "attacks": attacks, "rows": rows,
            "command": settings.command, "versions": package_versions(),
            "git_commit": git_commit(), "wall_seconds": round(seconds, 1)}  # fmt: skip


def write_report(
    settings: AuditSettings, spec: ModelSpec, results: list[AttackResult], seconds: float
) -> AuditReport:
    from harness_ext.provenance import (
        portable_paths,
        relative_stand_ins,
        write_json_atomic,
        write_text_atomic,
    )

    rows = table(spec, results)
    markdown = to_markdown(settings, spec, rows, results)
    output = Path(settings.output)
    paths = [settings.model, spec.pretrained, spec.peft, settings.target, settings.control,
             settings.scoring.output, *(r.model for r in results),
             *(r.control.attacked for r in results if r.control)]  # fmt: skip
    payload = portable_paths(to_json(settings, spec, rows, results, seconds),
                             relative_stand_ins(paths, output))  # fmt: skip
    files = [
        write_text_atomic(output / "audit.md", markdown + "\n"),
        write_text_atomic(output / "audit.csv", robustness_table.csv(rows)),
        write_json_atomic(output / "audit.json", payload),
    ]
    return AuditReport(rows, markdown, files, results)
