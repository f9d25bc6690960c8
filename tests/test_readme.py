"""Every `python lord.py` command line the README and docs/*.md show parses with the real parser, and its
configuration and `--set` values pass the real configuration check; the README stays a front page and
every local link of the README and the docs leads to a file that exists."""

import re
import shlex

import pytest

import config
from conftest import CLI, REPO
from lord.configuration import apply_overrides

DOCUMENTS = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))


def command_lines(path):
    """The `python lord.py` lines of a markdown file's code blocks, continuation lines joined."""
    lines, in_block = [], False
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.startswith("```"):
            in_block = not in_block
            continue
        line = line.split(" #")[0].strip()
        for prefix in ("OMP_NUM_THREADS=1 ", "OMP_WAIT_POLICY=PASSIVE "):
            line = line.removeprefix(prefix)
        if in_block and line.startswith("python lord.py"):
            lines.append(line)
    return lines


LINES = [(path.relative_to(REPO).as_posix(), line) for path in DOCUMENTS for line in command_lines(path)]


def test_the_readme_and_the_docs_show_command_lines():
    readme = [line for document, line in LINES if document == "README.md"]
    assert len(readme) >= 20 and len(LINES) > 60


def test_the_readme_is_a_front_page():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    opening = "\n".join(text.splitlines()[:20])
    assert "arxiv.org/abs/1906.11796" in opening and "arxiv.org/abs/2103.14017" in opening
    assert re.search(r"!\[[^\]]*\]\(assets/[^)]+\.png\)", opening), "no picture in the first 20 lines"


@pytest.mark.parametrize("document,line", LINES, ids=[f"{d}:{i}" for i, (d, _) in enumerate(LINES)])
def test_command_line_parses(document, line):
    words = shlex.split(line)[2:]
    for shell_operator in ("&&", ">", "|"):
        if shell_operator in words:
            words = words[: words.index(shell_operator)]
    args = CLI.build_parser().parse_args(words)
    if getattr(args, "config", None):
        apply_overrides(config.get_config(args.config), args.set or [])


def local_links(path):
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if not re.match(r"[a-z]+:", target) and not target.startswith("#"):
            yield target.split("#")[0]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_local_links_lead_to_files(document):
    missing = [target for target in local_links(document) if not (document.parent / target).exists()]
    assert missing == []
