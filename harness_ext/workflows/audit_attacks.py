"""The audit's attacks: the variants of the unlearned model to build (relearned on part of the
forget set, quantised to 8 or 4 bits, asked in other words), each built once and kept."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from harness_ext.row_slices import RowSliceError, row_slices, slice_range
from harness_ext.workflows.audit_settings import (
    ATTACK_CARD,
    QUANTIZE_SCHEMES,
    AuditError,
    AuditSettings,
    RelearnSettings,
    Variant,
    audited,
    forget_row_count,
    muse_relearn_rows,
    relearn_rows,
)
from harness_ext.workflows.score_inputs import (
    PARTIAL_PREFIX,
    ModelSpec,
    scoring_prompt_format,
    tokenizer_source,
)
from harness_ext.workflows.score_runs import slug
from tofu_tasks.lume.data import SUBTASKS

WMDP_FORGET_CORPORA = ("bio", "cyber")  # the domains with a forget corpus (cais/wmdp-corpora)


# ---------------------------------------------------------------------- the attacks
def plan(settings: AuditSettings) -> list[Variant]:
    # The table holds forget metrics only: the utility sets are not scored unless asked for.
    base = {"sets": list(audited(settings.scoring).sets), **settings.scoring.metadata}
    variants: list[Variant] = []
    for attack in settings.attacks:
        if attack == "relearn":
            variants.append(relearn_variant(settings, base))
        elif attack == "quantize":
            variants += [quantize_variant(settings, base, bits) for bits in settings.bits]
        elif attack == "fewshot":
            variants.append(fewshot_variant(settings.fewshot, base))
        else:
            variants.append(paraphrase_variant(base))
    return variants


def fewshot_variant(examples: int, base: dict[str, Any]) -> Variant:
    """The same model asked each WMDP question after ``examples`` other questions of its
    domain with their answers; before: zero-shot, as lm-eval asks."""
    asked = {"fewshot": examples}
    what = {"examples": examples,
            "drawn_from": "other questions of the same WMDP domain, with their answers"}  # fmt: skip
    return Variant("fewshot", f"fewshot-{examples}", what, {**base, **asked}, base,
                   scored=f"{examples}-shot prompts", title=f"{examples}-shot prompt")  # fmt: skip


def paraphrase_variant(base: dict[str, Any]) -> Variant:
    """The same model asked TOFU's rephrased forget questions; before: the original ones."""
    asked = {"forget_question": "paraphrased"}
    return Variant("paraphrase", "paraphrase", asked, {**base, **asked}, base,
                   scored="paraphrased questions")  # fmt: skip


def relearn_variant(settings: AuditSettings, base: dict[str, Any]) -> Variant:
    kind = settings.scoring.benchmark.kind
    if kind == "muse":
        return muse_relearn_variant(settings, base)
    if kind == "wmdp":
        return wmdp_relearn_variant(settings, base)
    if kind == "lume":
        return lume_relearn_variant(settings, base)
    split, r = settings.scoring.split, settings.relearn
    total = forget_row_count(split, base.get("data_dir"))
    trained, scored_rows = relearn_rows(r.rows, total, r.split)
    which = "rows given by hand" if r.rows is not None else (r.split or "same-authors")
    return rows_relearn_variant(r, base, which, split, trained, scored_rows, "trained rows")


def relearning(r: RelearnSettings) -> dict[str, Any]:
    """How a model relearns: the settings every relearn variant records after its data."""
    return {"steps": r.steps, "learning_rate": r.learning_rate,
            "lr_schedule": "constant, no warm-up", "batch_size": r.batch_size,
            "weights": "LoRA (r 8, alpha 32)" if r.lora else "all", "seed": r.seed,
            "max_length": r.max_length}  # fmt: skip


def relearn_title(shown: str, r: RelearnSettings) -> str:
    return f"relearn ({shown}), {r.steps} steps, lr {r.learning_rate:g}" + (
        ", LoRA" if r.lora else ""
    )


def rows_relearn_variant(
    r: RelearnSettings,
    base: dict[str, Any],
    which: str,
    name: str,
    trained: list[int],
    scored_rows: list[int],
    rows_word: str,
) -> Variant:
    """Relearning on forget rows (``name[a:b]``, rows specs of ``lm-unlearn finetune``), the
    other rows scored (the task option ``forget_rows``)."""
    trained_slices, scored_slices = row_slices(trained), row_slices(scored_rows)
    scored_text = ",".join(f"{a}:{b}" for a, b in scored_slices)
    what = {"split": which,
            "trained_on": ",".join(f"{name}[{a}:{b}]" for a, b in trained_slices),
            "scored_rows": scored_text, **relearning(r)}  # fmt: skip
    shown = ", ".join(f"{a}-{b - 1}" for a, b in trained_slices)
    title = relearn_title(f"{which}: {rows_word} {shown}", r)
    scored = {**base, "forget_rows": scored_text}
    return Variant("relearn", "relearn", what, scored, scored, f"rows {scored_text}", title)


def text_relearn_variant(
    settings: AuditSettings, base: dict[str, Any], trained_on: str, which: str, shown: str
) -> Variant:
    """Relearning on forget text (``trained_on``, text specs of ``lm-unlearn finetune``), the
    forget sets scored whole."""
    what = {"split": which, "trained_on": trained_on, "scored_rows": "all",
            **relearning(settings.relearn)}  # fmt: skip
    title = relearn_title(shown, settings.relearn)
    scored = "" if base == settings.scoring.metadata else audited(settings.scoring).described
    return Variant("relearn", "relearn", what, base, base, scored, title)


def muse_relearn_variant(settings: AuditSettings, base: dict[str, Any]) -> Variant:
    """Relearning on a MUSE corpus: a slice of its forget documents (``raw/forget``), cut into
    ``max_length``-token chunks with every token supervised; the forget criteria scored whole
    (the verbatim passages and the knowledge questions come from the whole forget corpus)."""
    from tofu_tasks.muse.data import read_split

    corpus, r = settings.scoring.task_options.corpus, settings.relearn
    total = len(read_split(corpus, "raw", "forget", base.get("data_dir")))
    start, stop = muse_relearn_rows(r.rows, total)
    which = "documents given by hand" if r.rows is not None else "the first half"
    trained_on = f"{settings.scoring.split}:forget[{start}:{stop}]"
    shown = f"forget documents {start}-{stop - 1} of {total}"
    return text_relearn_variant(settings, base, trained_on, which, shown)


def wmdp_relearn_variant(settings: AuditSettings, base: dict[str, Any]) -> Variant:
    """Relearning on WMDP's forget corpora (bio and cyber have one) of the audited domains: the
    texts ``--relearn-rows`` of each (default as many as the steps read), cut as RMU's code
    cuts them; every question of the domains scored."""
    from harness_ext.row_slices import parse_slice

    options, r = settings.scoring.benchmark.options(base), settings.relearn
    domains = [d for d in options.domain_list() if d in WMDP_FORGET_CORPORA]
    if not domains:
        raise AuditError(
            f"relearning needs a forget corpus: WMDP has them for {', '.join(WMDP_FORGET_CORPORA)} "
            f"only, and the audit scores {', '.join(options.domain_list())}"
        )
    try:
        start, stop = parse_slice(r.rows) if r.rows else (0, r.steps * r.batch_size)
    except RowSliceError:
        start, stop = -1, None
    start = start or 0
    if stop is None or start < 0 or stop <= start:
        raise AuditError(
            f"--relearn-rows must be 'start:stop' of each forget corpus's texts (e.g. ':40'), "
            f"got {r.rows!r}"
        )
    trained_on = ",".join(f"wmdp:{d}-forget-corpus[{start}:{stop}]" for d in domains)
    which = "texts given by hand" if r.rows else "as many texts as the steps read"
    shown = f"{' and '.join(domains)} forget corpus, texts {start}-{stop - 1}"
    return text_relearn_variant(settings, base, trained_on, which, shown)


def lume_relearn_variant(settings: AuditSettings, base: dict[str, Any]) -> Variant:
    """Relearning LUME's rows: the first half of the forget documents the audit scores (each a
    sentence completion and its questions), in LUME's prompt format; the other documents' rows
    scored. ``--relearn-rows`` names the trained rows by hand, as ``forget_rows`` numbers them."""
    options, r = settings.scoring.benchmark.options(base), settings.relearn
    subtasks = options.subtask_list()
    if 1 < len(subtasks) < len(SUBTASKS):
        raise AuditError(
            f"relearning LUME's rows trains on one subtask's rows or on all of them (training "
            f"data names no other choice: lume:forget/Task2[...]); the audit scores {subtasks}"
        )
    rows = "forget" + (f"/{subtasks[0]}" if len(subtasks) == 1 else "")
    trained, scored_rows = lume_relearn_rows(rows, options, r.rows)
    which = "rows given by hand" if r.rows is not None else "the first half of the documents"
    return rows_relearn_variant(r, base, which, f"lume:{rows}", trained, scored_rows, "forget rows")


def lume_relearn_rows(
    rows_name: str, options: Any, text: str | None
) -> tuple[list[int], list[int]]:
    """(rows trained on, rows scored) of LUME's rows ``rows_name`` (``forget/Task2``), numbered
    as ``forget_rows`` numbers them: by default the rows of the first half of the documents
    among the forget rows the audit scores."""
    from tofu_tasks.lume.data import LumeDataError, document_of, read_rows

    try:
        rows = read_rows(rows_name, options.data_dir)
    except LumeDataError as err:
        raise AuditError(f"relearn: {err}") from err
    chosen = options.scored_rows("forget", len(rows))
    positions = sorted(chosen) if chosen is not None else list(range(len(rows)))
    if text is not None:
        try:
            trained = set(slice_range(text, len(rows)))
        except RowSliceError as err:
            raise AuditError(
                f"--relearn-rows must be 'start:stop' of the forget rows (numbered as forget_rows "
                f"numbers them), got {text!r}: {err}"
            ) from err
    else:
        documents = list(dict.fromkeys(document_of(rows[p]["id"]) for p in positions))
        first = set(documents[: len(documents) // 2])
        trained = {p for p in positions if document_of(rows[p]["id"]) in first}
    scored = [p for p in positions if p not in trained]
    if not trained or not scored:
        raise AuditError(
            f"relearning needs forget rows to train on and others to score: {len(positions)} "
            f"forget rows are scored{' (give two documents or more)' if text is None else ''}"
        )
    return sorted(trained), scored


def relearn_data_folders(scoring: Any) -> dict[str, str | None]:
    """The data folder of the scored benchmark (task option ``data_dir``) as the training
    option that reads it: ``data_dir`` (TOFU), ``muse_data_dir`` or ``lume_data_dir``."""
    kind, data_dir = scoring.benchmark.kind, scoring.metadata.get("data_dir")
    return {f"{prefix}data_dir": data_dir if kind == owner else None
            for prefix, owner in (("", "tofu"), ("muse_", "muse"), ("lume_", "lume"))}  # fmt: skip


def quantize_variant(settings: AuditSettings, base: dict[str, Any], bits: int) -> Variant:
    import bitsandbytes

    what = {"bits": bits, "library": f"bitsandbytes {bitsandbytes.__version__}",
            "scheme": QUANTIZE_SCHEMES[bits], "device": quantize_device(settings)}  # fmt: skip
    scored = "" if base == settings.scoring.metadata else audited(settings.scoring).described
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
    from harness_ext.workflows.score_runs import model_identity

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
    from unlearn_methods.config import FinetuneConfig
    from unlearn_methods.data import is_text_spec
    from unlearn_methods.finetune import finetune

    folder = model_folder(settings, spec, variant)
    if (folder / ATTACK_CARD).is_file():
        print(f"relearn: reusing {folder}")
        return folder
    r, scoring = settings.relearn, settings.scoring
    # text is relearned without prompts (plain is recorded); rows as the task asks them
    text = is_text_spec(variant.settings["trained_on"])
    prompt_format = "plain" if text else scoring_prompt_format(spec, scoring)[0]
    options = FinetuneConfig(
        model=spec.peft or spec.pretrained, output_dir=str(folder),
        data=variant.settings["trained_on"], num_train_epochs=1.0, max_steps=r.steps,
        learning_rate=r.learning_rate, lr_scheduler_type="constant", warmup_steps=0,
        per_device_train_batch_size=r.batch_size, effective_batch_size=r.batch_size,
        max_length=r.max_length, prompt_format=prompt_format, lora=r.lora, seed=r.seed,
        pad_token=_pad_token(spec), overwrite=True, **relearn_data_folders(scoring),
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
