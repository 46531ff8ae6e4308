"""The output folder of a training run: one run per folder (a lock), a finished run never
overwritten without ``--overwrite``, an interrupted one resumed from its last complete checkpoint,
and only with the settings it started with."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

RUN_CARD = "run_card.json"
CHECKPOINTS = "checkpoints"


class OutputDirError(ValueError):
    """The output folder holds something a new run must not overwrite."""


# ---------------------------------------------------------------------- output folder
RUN_SETTINGS = "run_settings.json"  # the resolved settings of a run in progress
LOCK = ".lock"
BOOKKEEPING = {CHECKPOINTS, RUN_SETTINGS, LOCK}


def complete_checkpoint(folder: Path) -> bool:
    """A checkpoint written to the end: the marker, and a trainer state that parses."""
    from unlearn_methods.trainer import COMPLETE

    if not (folder / COMPLETE).is_file():
        return False
    try:
        json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return True


def resumable_checkpoint(output: Path) -> Path | None:
    """The newest complete checkpoint; incomplete ones (a run killed while writing one) are
    reported and set aside under a hidden name, so nothing resumes from them."""
    folder = output / CHECKPOINTS
    found = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    complete = [p for p in found if complete_checkpoint(p)]
    for incomplete in (p for p in found if p not in complete):
        aside = incomplete.with_name(f".incomplete-{incomplete.name}-{os.getpid()}")
        os.replace(incomplete, aside)
        print(f"skipped {incomplete}: written only in part (moved to {aside.name})")
    return complete[-1] if complete else None


def prepare_output(output: Path, overwrite: bool) -> Path | None:
    """Check the output folder; return the checkpoint to resume from, if any."""
    if not output.exists():
        return None
    if overwrite:
        for entry in output.iterdir():
            if entry.name != LOCK:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        return None
    if (output / RUN_CARD).exists():
        raise OutputDirError(
            f"{output} already holds a finished run ({RUN_CARD}); choose another --output or pass "
            f"--overwrite"
        )
    others = [p.name for p in output.iterdir() if p.name not in BOOKKEEPING]
    if others:
        raise OutputDirError(
            f"{output} exists and holds other files ({', '.join(sorted(others)[:5])}); choose an "
            f"empty folder or pass --overwrite"
        )
    return resumable_checkpoint(output)


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def output_lock(output: Path):
    """One training run per output folder: a second one refuses while the first holds the lock
    (the processes of one multi-GPU run share it through rank 0)."""
    if not is_main_process():
        yield
        return
    import fcntl

    existed = output.exists()
    output.mkdir(parents=True, exist_ok=True)
    handle = open(output / LOCK, "a+")  # noqa: SIM115  (held for the whole run)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise OutputDirError(
            f"another lm-unlearn run is writing to {output}; wait for it or choose another --output"
        ) from None
    try:
        yield
    finally:
        # the lock file stays only beside an interrupted run's state (it is resumed there)
        if not (output / RUN_SETTINGS).exists() or (output / RUN_CARD).exists():
            (output / LOCK).unlink(missing_ok=True)
        if not existed and output.is_dir() and not any(output.iterdir()):
            output.rmdir()
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def check_same_run(output: Path, settings: dict[str, Any], resuming: bool) -> None:
    """A resumed run must be the interrupted one; a new run records its settings."""
    path = output / RUN_SETTINGS
    if resuming and path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        if changed:
            listed = "; ".join(
                f"{k}: {before.get(k)!r} then, {settings.get(k)!r} now" for k in changed
            )
            raise OutputDirError(
                f"{output} holds an interrupted run with other settings ({listed}); rerun it with "
                f"its settings to resume, or pass --overwrite to start this one instead"
            )
    else:
        from harness_ext.provenance import write_json_atomic

        write_json_atomic(path, settings)
