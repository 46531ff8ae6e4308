"""What ``lm-unlearn score --forget NAME`` scores: a TOFU forget split, a MUSE corpus, WMDP or LUME, each
as its task, its options, its documents and its local data folders, read with the functions the
tasks themselves use (so a run's settings hash names exactly what the task will score)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tofu_tasks.lume.options import PROMPT_FORMAT as LUME_PROMPT_FORMAT
from tofu_tasks.muse.data import CORPORA
from tofu_tasks.muse.options import PROMPT_FORMAT as MUSE_PROMPT_FORMAT
from tofu_tasks.wmdp.options import PROMPT_FORMAT as WMDP_PROMPT_FORMAT

TOFU_SPLITS = ("forget01", "forget05", "forget10")
# what `lm-unlearn score --forget` takes besides TOFU's splits: a MUSE corpus, WMDP
MUSE_CORPORA = {f"muse-{corpus}": corpus for corpus in CORPORA}
WMDP = "wmdp"
LUME = "lume"
FORGET_CHOICES = (*TOFU_SPLITS, *MUSE_CORPORA, WMDP, LUME)


@dataclass(frozen=True)
class ScoredBenchmark:
    """One ``--forget`` value: ``kind`` is tofu, muse, wmdp or lume; ``own_prompt_format`` the format
    the task always asks in (None: chosen for each model, TOFU's case)."""

    forget: str
    kind: str
    task: str
    own_prompt_format: str | None = None

    def metric_list(self) -> list[dict[str, Any]]:
        """The task's lm-eval metric list (names, aggregations, ideals)."""
        from tofu_tasks import metric_list as tofu
        from tofu_tasks.lume import metric_list as lume
        from tofu_tasks.muse import metric_list as muse
        from tofu_tasks.wmdp import metric_list as wmdp

        return {"tofu": tofu, "muse": muse, "wmdp": wmdp, "lume": lume}[self.kind].metric_list()

    def options(self, metadata: dict[str, Any]):
        """The task options, parsed and checked as the task parses them."""
        if self.kind == "muse":
            from tofu_tasks.muse.options import MuseOptions

            return MuseOptions.from_metadata({**metadata, "corpus": MUSE_CORPORA[self.forget]})
        if self.kind == WMDP:
            from tofu_tasks.wmdp.options import WmdpOptions

            return WmdpOptions.from_metadata(metadata)
        if self.kind == LUME:
            from tofu_tasks.lume.options import LumeOptions

            return LumeOptions.from_metadata(metadata)
        from tofu_tasks.options import TaskOptions

        return TaskOptions.for_split(metadata, self.forget)

    def documents(self, metadata: dict[str, Any]) -> list[dict[str, Any]]:
        """The documents the task will score."""
        options = self.options(metadata)
        if self.kind == "muse":
            from tofu_tasks.muse.documents import muse_docs

            return muse_docs(options)
        if self.kind == WMDP:
            from tofu_tasks.wmdp.documents import wmdp_docs

            return wmdp_docs(options)
        if self.kind == LUME:
            from tofu_tasks.lume.documents import lume_docs

            return lume_docs(options)
        from tofu_tasks.documents import eval_docs

        return eval_docs(options)

    def data_folders(self, metadata: dict[str, Any]) -> list[Path]:
        """The local data folders the task reads (none: the hub)."""
        if self.kind == "muse":
            from tofu_tasks.muse.data import resolve_data_dir

            folders = [resolve_data_dir(metadata.get("data_dir"))]
        elif self.kind == WMDP:
            from tofu_tasks.wmdp.data import MMLU_DIR_ENV, WMDP_DIR_ENV, resolve_folder

            folders = [resolve_folder(metadata.get("data_dir"), WMDP_DIR_ENV, "WMDP"),
                       resolve_folder(metadata.get("mmlu_data_dir"), MMLU_DIR_ENV, "MMLU")]  # fmt: skip
        elif self.kind == LUME:
            from tofu_tasks.lume.data import resolve_data_dir

            folders = [resolve_data_dir(metadata.get("data_dir"))]
        else:
            from tofu_tasks.data import resolve_data_dir

            folders = [resolve_data_dir(metadata.get("data_dir"))]
        return [folder for folder in folders if folder]


def scored_benchmark(forget: str) -> ScoredBenchmark:
    """What ``--forget`` names (any other name is a TOFU split, checked by its task)."""
    if forget in MUSE_CORPORA:
        corpus = MUSE_CORPORA[forget]
        return ScoredBenchmark(forget, "muse", f"muse_{corpus}_unlearn", MUSE_PROMPT_FORMAT)
    if forget == WMDP:
        return ScoredBenchmark(forget, WMDP, "wmdp_unlearn", WMDP_PROMPT_FORMAT)
    if forget == LUME:
        return ScoredBenchmark(forget, LUME, "lume_unlearn", LUME_PROMPT_FORMAT)
    return ScoredBenchmark(forget, "tofu", f"tofu_{forget}_unlearn")


def benchmark_of_task(task: str) -> ScoredBenchmark:
    """What a task (``tofu_forget01_unlearn``, ``muse_news_unlearn``, ...) scores."""
    return scored_benchmark(scored_split(task))


def scored_split(task: str) -> str:
    """What ``--forget`` names for a task: ``forget01`` for tofu_forget01_unlearn, ``muse-news``
    for muse_news_unlearn, ``wmdp`` for wmdp_unlearn (tables label runs with it)."""
    split = task.removeprefix("tofu_").removesuffix("_unlearn")
    return split.replace("_", "-") if split.startswith("muse_") else split
