"""The command line's grammar, the same in every subcommand: options are dataclass fields parsed
by transformers' ``HfArgumentParser`` (each declared once, with its help), every long option is
accepted with dashes and with underscores (``--max-rows-per-set`` and ``--max_rows_per_set``),
help shows one spelling, and each command's help ends with examples."""

from __future__ import annotations

import argparse
import copy
import dataclasses
from types import MappingProxyType
from typing import Any

from transformers import HfArgumentParser

PROJECT_PACKAGES = ("harness_ext", "tofu_tasks", "unlearn_methods")


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
    """One spelling per option in help (the first given); examples printed as written; an
    option's default shown when it has one and its help does not say it already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and default not in (None, False, "", [], argparse.SUPPRESS)
            and "default" not in text
            and action.nargs != 0
        ):
            text += " (default: %(default)s)"
        return text

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings:
            return super()._format_action_invocation(action)
        shown = [o for o in action.option_strings if o not in getattr(action, "aliases", ())]
        if action.nargs == 0:
            return ", ".join(shown)
        value = self._format_args(action, self._get_default_metavar_for_optional(action))
        return ", ".join(f"{o} {value}" for o in shown)


def help_layout(config_type: type) -> list[tuple[str | None, list[dataclasses.Field]]]:
    """The fields of a dataclass in help order: one group per project class (its
    ``help_group``, most derived first, fields in the order written), then the fields a
    library declares (TrainingArguments'), which are accepted but left out of help: they
    are the library's, documented there."""
    import inspect

    by_name = {f.name: f for f in dataclasses.fields(config_type) if f.init}
    groups: list[tuple[str | None, list[dataclasses.Field]]] = []
    placed: set[str] = set()
    for cls in config_type.__mro__:
        if cls.__module__.split(".")[0] not in PROJECT_PACKAGES:
            continue
        names = [n for n in inspect.get_annotations(cls) if n in by_name and n not in placed]
        shown = [by_name[n] for n in names if "help" in by_name[n].metadata]
        placed |= {f.name for f in shown}
        if shown:
            groups.append((getattr(cls, "help_group", None), shown))
    hidden = [f for name, f in by_name.items() if name not in placed]
    groups.append((argparse.SUPPRESS, hidden))
    return groups


class Parser(HfArgumentParser):
    """An argument parser of dataclasses whose long options also take the other spelling."""

    def __init__(self, dataclass_types: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("allow_abbrev", False)  # --lr must not silently mean --lr-scheduler-type
        super().__init__(dataclass_types, **kwargs)

    def _add_dataclass_arguments(self, dtype: type) -> None:
        from typing import get_type_hints

        hints = get_type_hints(dtype)
        for title, group_fields in help_layout(dtype):
            target = self if title in (None, argparse.SUPPRESS) else self.add_argument_group(title)
            for item in group_fields:
                if title == argparse.SUPPRESS:  # a copy: the dataclass keeps its help
                    item = copy.copy(item)
                    item.metadata = MappingProxyType({**item.metadata, "help": title})
                item.type = hints[item.name]
                self._parse_dataclass_field(target, item)

    def add_argument(self, *names: str, **kwargs: Any) -> argparse.Action:
        return add_both_spellings(super().add_argument, names, kwargs)

    def add_argument_group(self, *args: Any, **kwargs: Any) -> argparse._ArgumentGroup:
        group = super().add_argument_group(*args, **kwargs)
        plain_add = group.add_argument
        group.add_argument = lambda *names, **more: add_both_spellings(plain_add, names, more)
        return group

    def dataclasses_from(self, namespace: argparse.Namespace) -> list[Any]:
        """The parsed dataclasses (what ``parse_args_into_dataclasses`` builds, from a namespace
        parsed by a parent parser)."""
        built = []
        for dtype in self.dataclass_types:
            names = {f.name for f in dataclasses.fields(dtype) if f.init}
            built.append(dtype(**{k: v for k, v in vars(namespace).items() if k in names}))
        return built

    def field_dests(self) -> set[str]:
        return {
            f.name for dtype in self.dataclass_types for f in dataclasses.fields(dtype) if f.init
        }


def add_both_spellings(add, names: tuple[str, ...], kwargs: dict[str, Any]) -> argparse.Action:
    """Add an option under its dashed and its underscored name; help and usage show the dashed
    one first (``--max-length``), as the project's other options."""
    hidden = tuple(kwargs.pop("hidden_aliases", ()))  # earlier names, still read, not shown
    names = (*names, *hidden)
    extra = [other for name in names if (other := other_spelling(name)) and other not in names]
    ordered = sorted([*names, *extra], key=lambda n: n.startswith("--") and "_" in n)
    if kwargs.get("action") == "store_false" and names[0].startswith("--no"):
        kwargs["help"] = argparse.SUPPRESS  # the switch's own help names it
    if kwargs.get("nargs") == "?" and kwargs.get("const") is True:
        kwargs.setdefault("metavar", "BOOL")  # a switch that also takes true / false
    action = add(*ordered, **kwargs)
    spellings = set(action.option_strings)
    action.aliases = tuple(
        s
        for s in action.option_strings
        if ("_" in s and other_spelling(s) in spellings) or s in hidden
    )
    return action


def with_examples(parser: argparse.ArgumentParser, examples: list[str]) -> None:
    """End the command's help with its examples."""
    parser.epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
