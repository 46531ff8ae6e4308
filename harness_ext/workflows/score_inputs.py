"""What a scoring run takes: the model (a hub id, a folder or an adapter, resolved and named by
what it is), the settings, and the prompt format, detected and never guessed silently."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness_ext.lm_eval_plugin import DEFAULT_BACKEND
from harness_ext.model_files import check_adapter_fits, check_safetensors
from harness_ext.provenance import (
    files_sha256,
    model_fingerprint,
    setting_files,
    settings_sha256,
)
from tofu_tasks.scored_benchmarks import ScoredBenchmark, scored_benchmark

MANIFEST = "manifest.json"
PARTIAL_PREFIX = ".partial-"
MANIFEST_FORMAT = "lm-unlearn-score/1"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ScoreError(ValueError):
    """Bad input to ``lm-unlearn score``: the message says what and how to fix it."""


@dataclass
class ModelSpec:
    """What lm-eval loads: ``pretrained`` (+ ``peft``), and how to recognise it again."""

    source: str
    pretrained: str
    peft: str | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)
    name: str = ""  # what the model is: its method, --label, or its folder / hub name
    base_name: str = ""  # the model it derives from (the root of its training cards)

    def __post_init__(self) -> None:
        if not self.name:
            self.name, self.base_name = describe_model(self.peft or self.pretrained)

    @property
    def label(self) -> str:
        """``name · base`` (the base left out when it is the model itself)."""
        if self.base_name and self.base_name != self.name:
            return f"{self.name} · {self.base_name}"
        return self.name


TRAINING_CARDS = {"run_card.json": "method", "finetune_card.json": None}


def _training_card(model: str) -> tuple[str, dict[str, Any]] | None:
    path = Path(model).expanduser()
    for card_name in TRAINING_CARDS:
        card = path / card_name
        if card.is_file():
            try:
                return card_name, json.loads(card.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                return None
    return None


def checkpoint_selection(spec: ModelSpec) -> dict[str, Any] | None:
    """How ``lm-unlearn train --select`` chose the checkpoint (its run card), for the tables:
    methods compared at a matched amount of forgetting say so."""
    found = _training_card(spec.peft or spec.pretrained)
    selection = (found[1].get("selection") or None) if found else None
    if not isinstance(selection, dict):
        return None
    keys = (
        "rule",
        "metric",
        "operator",
        "target",
        "reference",
        "reached",
        "step",
        "value",
        "final_step",
    )
    out = {key: selection[key] for key in keys if key in selection}
    if out.get("reference"):  # a local path means nothing on another machine: keep its name
        out["reference"] = Path(str(out["reference"])).name
    return out


def unlearned_from(spec: ModelSpec) -> str | None:
    """The weights digest of the model an ``lm-unlearn train`` checkpoint was unlearned from (its
    run card): tables show that model's run as the one before unlearning."""
    found = _training_card(spec.peft or spec.pretrained)
    if not found or found[0] != "run_card.json" or spec.peft:
        return None
    base = found[1].get("base_model")
    return base.get("weights_sha256") if isinstance(base, dict) else None


def _own_name(model: str) -> str:
    return Path(model.rstrip("/")).name or model


def describe_model(model: str) -> tuple[str, str]:
    """(name, base) of a model: e.g. ("ME+GD", "SmolLM2-135M-Instruct") for a checkpoint of
    ``lm-unlearn train``, ("fine-tuned", base) for one of ``finetune``, else its own name twice.
    The base is found by following the training cards back to a model without one."""
    found = _training_card(model)
    if found is None:
        return _own_name(model), _own_name(model)
    card_name, card = found
    name = str(card.get("method") or "unlearned") if TRAINING_CARDS[card_name] else "fine-tuned"
    parent = str((card.get("options") or {}).get("model") or "")
    for _ in range(20):  # a chain of training runs, each card naming its input model
        if not parent:
            return name, _own_name(model)
        above = _training_card(parent)
        if above is None:
            return name, _own_name(parent)
        parent = str((above[1].get("options") or {}).get("model") or "")
    return name, _own_name(parent)


@dataclass
class ScoreSettings:
    split: str = "forget01"
    backend: str = DEFAULT_BACKEND
    model_args: str = ""
    prompt_format: str | None = None  # None: chat when the tokenizer has a template, else plain
    retain_reference: str | None = None
    pre_unlearning_reference: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    label: str | None = None  # the model's name in tables (default: from its training card)
    base_label: str | None = None  # its base model's name in tables (default: from the cards)
    batch_size: str = "auto"
    device: str | None = None
    output: Path = Path("results/runs")
    force: bool = False
    # set by lm-unlearn audit: the attack behind this run (name, variant, settings, input model);
    # it enters the manifest, and its identity enters the settings
    attack: dict[str, Any] | None = None

    @property
    def benchmark(self) -> ScoredBenchmark:
        """What ``split`` (``--forget``) names: the task, its options, documents and data."""
        return scored_benchmark(self.split)

    @property
    def task(self) -> str:
        return self.benchmark.task

    @property
    def muse(self) -> bool:
        """Whether the run scores a MUSE corpus."""
        return self.benchmark.kind == "muse"

    @property
    def task_options(self):
        """The task options, parsed and checked as the task parses them."""
        return self.benchmark.options(self.metadata)

    def eval_docs(self) -> list[dict[str, Any]]:
        """The documents the task will score (the functions the tasks use)."""
        return self.benchmark.documents(self.metadata)

    def data_folders(self) -> list[Path]:
        """The local data folders the task reads (none: the hub)."""
        return self.benchmark.data_folders(self.metadata)


# ---------------------------------------------------------------------- models
def _is_local(text: str) -> bool:
    return Path(text).expanduser().exists()


def _check_hub_id(text: str, what: str) -> None:
    if not HUB_ID.match(text) or text.startswith((".", "/", "~")):
        raise ScoreError(f"{what} {text!r} does not exist (neither a local folder nor a hub id)")


def resolve_model(model: str, base: str | None = None) -> ModelSpec:
    """A hub id, a checkpoint folder, or a PEFT adapter folder (base from its config or ``base``)."""
    path = Path(model).expanduser()
    if path.is_dir() and (path / "adapter_config.json").is_file():
        config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
        base = base or config.get("base_model_name_or_path")
        if not base:
            raise ScoreError(f"{path}/adapter_config.json names no base model; pass --base")
        if not _is_local(base):
            _check_hub_id(base, f"the base model of adapter {path}:")
        else:
            check_safetensors(Path(base).expanduser())
        check_adapter_fits(path, str(Path(base).expanduser()) if _is_local(base) else base)
        # the adapter's weights; its config (base path left out) counts with its setting files
        adapter_files = [
            p
            for p in path.iterdir()
            if p.name.startswith("adapter_") and p.is_file() and p.name != "adapter_config.json"
        ]
        settings = setting_files(path)  # adapter_config.json and its own tokenizer, if any
        return ModelSpec(
            source=model,
            pretrained=str(Path(base).expanduser()) if _is_local(base) else base,
            peft=str(path),
            fingerprint={
                "base": model_fingerprint(base),
                "adapter": {
                    "path": str(path.resolve()),
                    "sha256": files_sha256(adapter_files),
                    "files_sha256": settings_sha256(settings) if settings else None,
                },
            },
        )
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ScoreError(
                f"{path} holds neither a model (config.json) nor an adapter (adapter_config.json)"
            )
        check_safetensors(path)
        return ModelSpec(source=model, pretrained=str(path), fingerprint=model_fingerprint(model))
    if path.exists():
        raise ScoreError(f"{model} is a file; give the model's folder or hub id")
    _check_hub_id(model, "model")
    return ModelSpec(source=model, pretrained=model, fingerprint=model_fingerprint(model))


def find_models(folder: Path) -> list[str]:
    """Checkpoints (config.json) and adapters (adapter_config.json) directly inside ``folder``."""
    found = []
    for child in sorted(folder.iterdir()):
        if child.is_dir() and (
            (child / "config.json").is_file() or (child / "adapter_config.json").is_file()
        ):
            found.append(str(child))
    return found


def expand_models(models: list[str], list_file: str | None = None) -> list[str]:
    """Models from the command line and a list file; a folder of checkpoints gives each one."""
    wanted = list(models)
    if list_file:
        lines = Path(list_file).read_text(encoding="utf-8").splitlines()
        wanted += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    expanded = []
    for model in wanted:
        path = Path(model).expanduser()
        is_model = (path / "config.json").is_file() or (path / "adapter_config.json").is_file()
        if path.is_dir() and not is_model:
            inside = find_models(path)
            if not inside:
                raise ScoreError(f"{path} holds no model or adapter folders")
            expanded += inside
        else:
            expanded.append(model)
    if not expanded:
        raise ScoreError("no model given: pass MODEL(s) or --list FILE")
    return expanded


# ---------------------------------------------------------------------- prompt format
def tokenizer_source(spec: ModelSpec) -> str:
    if spec.peft and any(
        (Path(spec.peft) / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json")
    ):
        return spec.peft
    return spec.pretrained


def requested_prompt_format(settings: ScoreSettings) -> str | None:
    """--prompt-format, or the task options' prompt_format / prompt_template (never both)."""
    given = {
        "--prompt-format": settings.prompt_format,
        "prompt_format in --metadata": settings.metadata.get("prompt_format"),
        "prompt_template in --metadata": "template"
        if settings.metadata.get("prompt_template")
        else None,
    }
    chosen = {where: value for where, value in given.items() if value}
    if len(set(chosen.values())) > 1:
        raise ScoreError(
            "conflicting prompt formats: "
            + ", ".join(f"{where} = {value}" for where, value in chosen.items())
        )
    return next(iter(chosen.values()), None)


def scoring_prompt_format(spec: ModelSpec, settings: ScoreSettings) -> tuple[str, str]:
    """(format, why) of a scoring run: the task's own for MUSE and WMDP (no other can be asked
    for), else as requested or detected (:func:`detect_prompt_format`)."""
    requested = requested_prompt_format(settings)
    own = settings.benchmark.own_prompt_format
    if not own:
        return detect_prompt_format(spec, requested)
    if requested:
        raise ScoreError(f"{settings.split} asks in its own format ({own}): drop the prompt format")
    return own, f"{settings.split}'s own format"


def detect_prompt_format(spec: ModelSpec, requested: str | None) -> tuple[str, str]:
    """(format, why): the chat template when the tokenizer has one, else plain; or as requested."""
    from transformers import AutoTokenizer

    from harness_ext.prompts import PROMPT_FORMATS

    known = (*PROMPT_FORMATS, "template")  # template: prompt_template in the task options
    if requested and requested not in known:
        raise ScoreError(f"unknown prompt format {requested!r}; choose from {', '.join(known)}")
    if requested == "template":
        return requested, "prompt_template in --metadata"
    if requested and requested != "chat":
        return requested, "chosen with --prompt-format"
    from harness_ext.prompts import choose_prompt_format

    source = tokenizer_source(spec)

    def has_chat_template() -> bool:
        return bool(getattr(AutoTokenizer.from_pretrained(source), "chat_template", None))

    if requested == "chat":  # asked for by name: still checked against the tokenizer
        if not has_chat_template():
            raise ScoreError(
                f"--prompt-format chat: the tokenizer of {source} has no chat template; "
                f"use plain, llama2 or phi"
            )
        return "chat", "chosen with --prompt-format"
    return choose_prompt_format(
        None,
        spec.peft or spec.pretrained,
        has_chat_template,
        why_chat=f"the tokenizer of {source} has a chat template",
        why_plain=f"the tokenizer of {source} has no chat template",
    )
