"""What a result needs to be traced and rerun: model fingerprints, versions, hardware, atomic writes."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterable
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
# Files a Trainer writes beside the weights that are no part of the model: training_args.bin
# pickles the TrainingArguments, output folder included, so hashing it would make the same
# model a different one in every folder.
TRAINER_STATE_FILES = (
    "training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.pth",
)  # fmt: skip


def content_hash(rows: Iterable[dict[str, Any]]) -> str:
    """sha256 of rows in canonical JSON: identical data gives an identical hash."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a model folder (Trainer state files left out)."""
    return [
        p
        for p in folder.iterdir()
        if p.is_file()
        and p.suffix in WEIGHT_SUFFIXES
        and p.name not in TRAINER_STATE_FILES
        and not p.name.startswith("rng_state")
    ]


PACKAGES = (
    "lm-unlearn",
    "lm_eval",
    "torch",
    "transformers",
    "datasets",
    "peft",
    "trl",
    "accelerate",
)


def files_sha256(paths: list[Path]) -> str:
    """One sha256 over the names and bytes of several files (order-independent).

    Remembered per process by path, size and modification time: scoring and the demo fingerprint
    the same multi-GB checkpoints several times, and a rewritten file changes its stamp.
    """
    stamps = []
    for path in sorted(paths, key=lambda p: p.name):
        info = os.stat(path)
        stamps.append((str(Path(path).resolve()), info.st_size, info.st_mtime_ns))
    return _files_sha256(tuple(stamps))


@functools.lru_cache(maxsize=256)
def _files_sha256(stamps: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in stamps:
        path = Path(name)
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


# Files beside the weights that change what a model is asked or how it answers: its config,
# generation config, tokenizer (chat template included) and any code it runs.
SETTING_FILES = (
    "config.json", "generation_config.json", "tokenizer_config.json", "tokenizer.json",
    "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "chat_template.json",
    "tokenizer.model", "vocab.json", "vocab.txt", "merges.txt", "preprocessor_config.json",
    "adapter_config.json",
)  # fmt: skip
SETTING_SUFFIXES = (".tiktoken", ".py", ".jinja")


# Keys of config files that name where a model was loaded from: a path of the machine that saved
# it, which says nothing about what the model is (its base is fingerprinted on its own).
LOCATION_KEYS = ("_name_or_path", "name_or_path", "base_model_name_or_path")


def settings_sha256(paths: list[Path]) -> str:
    """One sha256 over setting files, with the location keys of JSON files left out."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode())
        data = path.read_bytes()
        if path.suffix == ".json":
            try:
                content = json.loads(data)
            except (json.JSONDecodeError, UnicodeDecodeError):
                content = None
            if isinstance(content, dict):
                kept = {k: v for k, v in content.items() if k not in LOCATION_KEYS}
                data = json.dumps(kept, sort_keys=True).encode()
        digest.update(data)
    return digest.hexdigest()


def setting_files(folder: Path) -> list[Path]:
    """The files of a model folder besides its weights that can change a score."""
    return [
        p
        for p in folder.iterdir()
        if p.is_file() and (p.name in SETTING_FILES or p.suffix in SETTING_SUFFIXES)
    ]


def model_fingerprint(pretrained: str, revision: str | None = None) -> dict[str, Any]:
    """A local model directory's weight hash and the hash of its config and tokenizer files,
    or a hub id with its revision (resolved to a commit when the hub can be reached)."""
    path = Path(pretrained).expanduser()
    if path.is_dir():
        weights = weight_files(path)
        settings = setting_files(path)
        return {
            "path": str(path.resolve()),
            "weights_sha256": files_sha256(weights) if weights else None,
            "files_sha256": settings_sha256(settings) if settings else None,
        }
    return {"hub_id": pretrained, "revision": resolved_revision(pretrained, revision)}


@functools.lru_cache(maxsize=64)
def resolved_revision(hub_id: str, revision: str | None) -> str:
    """The commit a hub revision (a branch such as "main") points at, so that a model updated
    on the hub is not taken for the one scored before; the revision as given when offline."""
    revision = revision or "main"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return revision
    try:
        from huggingface_hub import HfApi

        return HfApi().model_info(hub_id, revision=revision, timeout=10).sha or revision
    except Exception:  # noqa: BLE001  (no network, a private repo: keep the revision as given)
        return revision


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(directory: str | Path | None = None) -> str | None:
    directory = Path(directory or Path(__file__).resolve().parents[1])
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def cpu_model() -> str | None:
    """The CPU's name (the kind of CPU decides floating-point results of training)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "cpus": os.cpu_count(),
                            "cpu": cpu_model()}  # fmt: skip
    try:
        import torch

        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return info


def user_mode(directory: bool = False) -> int:
    """The permissions a normal ``open``/``mkdir`` would give under the user's umask
    (temporary files and folders are created 0600/0700 whatever the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write through a temporary file and a rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, user_mode())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    """Write JSON atomically (see :func:`write_text_atomic`)."""
    return write_text_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False))


def portable_paths(value: Any, paths: dict[str, str]) -> Any:
    """``value`` (JSON-like) with every occurrence of each local path replaced by its stand-in.

    ``paths`` maps a path as it appears (given or resolved) to what a reader elsewhere should see,
    e.g. the path relative to the results folder. Results written this way name no folder of the
    machine that made them, so they read the same after a copy or a fresh clone.
    """
    import re

    keys = sorted((k for k in paths if k), key=len, reverse=True)
    if not keys:
        return value
    pattern = re.compile(r"(?<![\w./-])(" + "|".join(re.escape(k) for k in keys) + r")(?![\w.-])")

    def rewrite(item: Any) -> Any:
        if isinstance(item, str):
            return pattern.sub(lambda match: paths[match.group(1)], item)
        if isinstance(item, dict):
            return {key: rewrite(inner) for key, inner in item.items()}
        if isinstance(item, (list, tuple)):
            return [rewrite(inner) for inner in item]
        return item

    return rewrite(value)


def relative_stand_ins(paths: list[str | Path | None], root: str | Path) -> dict[str, str]:
    """Each existing local path (as given and resolved) -> its path relative to ``root``, or
    ``local:<name>`` when the two share no folder (a path climbing to ``/`` and down again would
    name the machine's folders all the same)."""
    root = Path(root).resolve()
    stand_ins: dict[str, str] = {}
    for given in paths:
        if not given:
            continue
        path = Path(str(given)).expanduser()
        if not path.exists():
            continue
        resolved = path.resolve()
        shared = os.path.commonpath([resolved, root])
        if shared == resolved.anchor:
            relative = f"local:{resolved.name}"
        else:
            relative = os.path.relpath(resolved, root)
        # A bare relative name ("model") could be any word of the text: only forms with a slash.
        for form in {str(given), str(path), str(path.resolve()), str(path.absolute())}:
            form = form.rstrip("/")
            if "/" in form and form not in (".", ".."):
                stand_ins[form] = relative
    return stand_ins
