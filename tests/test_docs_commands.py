"""Every command in README.md and docs/*.md is one the tools accept as written.

Each shell line of every ```bash block is parsed by the parser of the tool it calls: `lm-unlearn`
commands by the project's own parser (and, for the training commands, by the TrainingArguments
parser their extra flags go to), `lm_eval` commands by lm-eval's, `accelerate launch -m ...` by
the module's, `make` targets against the Makefile, pip extras against pyproject.toml. So a
renamed flag, a removed subcommand or a typo in the documentation fails here. The commands that
can run offline on a CPU run for real in the tests named in the pages (the README's first command
in test_readme_commands.py, the installed commands in test_installed.py, the demo's in
test_demo.py, ...).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def split_words(line: str) -> list[str]:
    """A shell line's words, comments dropped (a # inside quotes stays)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def shell_lines(page: Path) -> list[list[str]]:
    """The words of each command line of a page's bash blocks (continuations and quoted
    newlines joined)."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
        pending = ""
        for line in block.replace("\\\n", " ").splitlines():
            pending = f"{pending}\n{line}" if pending else line
            try:
                words = split_words(pending)
            except ValueError:  # a quote that closes on a later line
                continue
            pending = ""
            if words:
                found.append(words)
        assert not pending, f"{page.name}: unclosed quote in {pending!r}"
    return found


def expand(word: str, values: dict[str, str]) -> str:
    """$VAR as the loop's value, else as VAR."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m[1], m[1]), word)


def commands() -> list[tuple[str, list[str]]]:
    """(page, argv) of every command; loop headers and assignments skipped, a loop's variable
    as its first value, any other $VAR as VAR."""
    found = []
    for page in PAGES:
        values: dict[str, str] = {}
        for words in shell_lines(page):
            if words[0] == "for":  # for x in a b; do
                values[words[1]] = words[3].rstrip(";")
                continue
            words = [w for w in words if w not in ("do", "done", ";")]
            if not words or (len(words) == 1 and re.fullmatch(r"[A-Z_]+=\S*", words[0])):
                continue
            found.append((page.name, [expand(word, values) for word in words]))
    return found


COMMANDS = commands()


def test_the_pages_have_commands():
    pages = {page for page, _ in COMMANDS}
    assert {"README.md", "scoring.md", "unlearning.md", "audit.md"} <= pages, pages
    assert len(COMMANDS) > 30


def _parse_lm_unlearn(argv: list[str]) -> None:
    from harness_ext.commands.cli import TRAINING_COMMANDS, parse_command

    if argv[:1] == ["eval"]:
        _parse_lm_eval(argv[1:])
        return
    args = parse_command(argv)
    if argv[0] in TRAINING_COMMANDS:  # the options' own checks (choices, batch, ...)
        args.parser.dataclasses_from(args)


def _parse_lm_eval(argv: list[str]) -> None:
    from lm_eval._cli.harness import HarnessCLI

    cli = HarnessCLI()
    if argv[:1] not in (["run"], ["ls"], ["validate"]):
        argv = ["run", *argv]  # lm_eval's own rule: no subcommand means run
    cli._parser.parse_args(argv)


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][\w-]*):", text, re.M))


def check(argv: list[str]) -> None:
    tool, args = argv[0], argv[1:]
    if tool == "lm-unlearn":
        _parse_lm_unlearn(args)
    elif tool in ("lm_eval", "lm-eval"):
        _parse_lm_eval(args)
    elif tool == "accelerate":
        assert args[0] == "launch" and "-m" in args, argv
        module_at = args.index("-m") + 1
        module, rest = args[module_at], args[module_at + 1 :]
        if module == "lm_eval":
            _parse_lm_eval(rest)
        else:
            assert module == "harness_ext.commands.cli", module
            _parse_lm_unlearn(rest)
        config = args[args.index("--config_file") + 1] if "--config_file" in args else None
        assert config is None or (ROOT / config).exists(), config
    elif tool == "make":
        unknown = set(a for a in args if "=" not in a) - _make_targets()
        assert not unknown, f"no make target {unknown}"
    elif tool == "pip":
        assert args[:2] == ["install", "-e"], argv
        extra = re.fullmatch(r"\.(?:\[(\w+)\])?", args[2])
        assert extra, argv
        if extra.group(1):
            assert f"\n{extra.group(1)} = [" in (ROOT / "pyproject.toml").read_text()
    else:
        raise AssertionError(f"a documented command runs {tool!r}, which this test cannot check")


@pytest.mark.parametrize(
    "page, argv", COMMANDS, ids=[f"{p}:{' '.join(a)[:60]}" for p, a in COMMANDS]
)
def test_documented_command_parses(page, argv):
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            check(argv)
    except SystemExit as exit_:
        # argparse exits 2 on a bad command line; --help exits 0
        assert exit_.code == 0, f"{page}: {shlex.join(argv)}\n{errors.getvalue()[-2000:]}"


def test_the_command_reference_is_what_the_parser_prints():
    from harness_ext.commands.reference import command_reference

    page = (ROOT / "docs" / "commands.md").read_text()
    assert page == command_reference(), "docs/commands.md is stale: run `make docs`"
