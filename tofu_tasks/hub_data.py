"""Reading a benchmark's dataset from the Hugging Face hub or from a local folder holding the same
files under the same dataset card (its ``configs:`` block maps each config and split to its
file), as ``datasets.load_dataset`` reads either. MUSE's and WMDP's loaders share it; each checks
the rows' fields itself and raises its own error class.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def local_folder(
    given: str | os.PathLike | None, env: str, what: str, error: type[Exception]
) -> Path | None:
    """The local dataset folder: ``given``, else ``$env``, else None (the hub). A folder that
    does not exist or holds no dataset card is an ``error``."""
    chosen = given or os.environ.get(env)
    if not chosen:
        return None
    folder = Path(chosen).expanduser()
    if not folder.is_dir():
        raise error(f"{what} data folder {folder} does not exist")
    if not (folder / "README.md").is_file():
        raise error(
            f"{folder} has no README.md: a local {what} folder holds the dataset card whose "
            f"'configs:' block maps each config and split to its file, as on the hub"
        )
    return folder


def load_split(
    hub_id: str, config: str, split: str, folder: Path | None, env: str, error: type[Exception]
) -> tuple[list[dict[str, Any]], str]:
    """(rows, where they came from) of one split, from ``folder`` or the hub."""
    source = str(folder) if folder else hub_id
    where = f"{source} ({config}/{split})"
    # A local folder is read afresh, without datasets' split-size checks: its cache would serve
    # an edited file's old rows, or refuse the file for no longer having the size it had.
    fresh = {"download_mode": "force_redownload", "verification_mode": "no_checks"}
    try:
        import datasets

        loaded = datasets.load_dataset(
            source, name=config, split=split, **(fresh if folder else {})
        )
    except ValueError as err:  # an unknown config or split: datasets says which exist
        raise error(f"cannot read {where}: {err}") from err
    except (OSError, FileNotFoundError) as err:
        how = "" if folder else f" (offline? set {env} to a local copy)"
        raise error(f"cannot read {where}{how}: {err}") from err
    return [dict(row) for row in loaded], where
