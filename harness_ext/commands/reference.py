"""docs/commands.md: every `lm-unlearn` command's help, generated from the parser itself.

`python -m harness_ext.commands.reference > docs/commands.md` (or `make docs`) rewrites the page;
a test checks that the committed page equals what the parser prints, so the reference cannot
drift from the code.
"""

from __future__ import annotations

import argparse
import os
import sys

HEADER = """# Command reference

Every `lm-unlearn` command with its options, as `lm-unlearn COMMAND --help` prints them (this page
is generated from the parser: `make docs`). `lm_eval`'s own options are in
[lm-eval's documentation](https://github.com/EleutherAI/lm-evaluation-harness/blob/main/docs/interface.md);
the task options its `--metadata` takes are in [scoring.md](scoring.md#options---metadata-).
"""

WIDTH = "100"  # argparse wraps help to $COLUMNS: fixed, so the page is the same on any terminal


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def command_reference() -> str:
    """The page: the top-level help, then each command's."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        from harness_ext.commands.cli import build_parser

        parser = build_parser()
        parts = [HEADER, "```text", parser.format_help().rstrip(), "```"]
        for name, command in subcommands(parser).items():
            parts += ["", f"## `lm-unlearn {name}`", "", "```text", command.format_help().rstrip(),
                      "```"]  # fmt: skip
        return "\n".join(parts) + "\n"
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous


if __name__ == "__main__":
    sys.stdout.write(command_reference())
