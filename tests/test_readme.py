"""Every `python lord.py` command line the README shows parses with the real parser, and its
configuration and `--set` values pass the real configuration check."""

import shlex

import pytest

import config
from conftest import CLI, REPO
from lord.configuration import apply_overrides


def readme_command_lines():
    """The `python lord.py` lines of the README's code blocks, continuation lines joined."""
    lines, in_block = [], False
    text = (REPO / "README.md").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.startswith("```"):
            in_block = not in_block
            continue
        line = line.split(" #")[0].strip()
        if in_block and line.startswith("python lord.py"):
            lines.append(line)
    return lines


LINES = readme_command_lines()


def test_the_readme_shows_command_lines():
    assert len(LINES) > 40


@pytest.mark.parametrize("line", LINES)
def test_readme_command_line_parses(line):
    words = shlex.split(line)[2:]
    for shell_operator in ("&&", ">", "|"):
        if shell_operator in words:
            words = words[: words.index(shell_operator)]
    args = CLI.build_parser().parse_args(words)
    if getattr(args, "config", None):
        apply_overrides(config.get_config(args.config), args.set or [])
