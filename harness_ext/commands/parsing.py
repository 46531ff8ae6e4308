"""The command line's grammar, the same in every subcommand: each long option is accepted with
dashes and with underscores (``--max-rows-per-set`` and ``--max_rows_per_set``, as TRL's and
transformers' parsers accept both), help shows one spelling, and each command's help ends with
examples."""

from __future__ import annotations

import argparse
from typing import Any


def other_spelling(option: str) -> str | None:
    """``--max-rows-per-set`` ↔ ``--max_rows_per_set``; None for an option with neither."""
    if not option.startswith("--"):
        return None
    body = option[2:]
    if "-" in body:
        return "--" + body.replace("-", "_")
    if "_" in body:
        return "--" + body.replace("_", "-")
    return None


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """One spelling per option in help (the first given); examples printed as written."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings:
            return super()._format_action_invocation(action)
        shown = [o for o in action.option_strings if o not in getattr(action, "aliases", ())]
        if action.nargs == 0:
            return ", ".join(shown)
        value = self._format_args(action, self._get_default_metavar_for_optional(action))
        return ", ".join(f"{o} {value}" for o in shown)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose long options also take the other spelling."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *names: str, **kwargs: Any) -> argparse.Action:
        aliases = [
            other for name in names if (other := other_spelling(name)) and other not in names
        ]
        action = super().add_argument(*names, *aliases, **kwargs)
        action.aliases = tuple(aliases)
        return action


def with_examples(parser: argparse.ArgumentParser, examples: list[str]) -> None:
    """End the command's help with its examples."""
    parser.epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
