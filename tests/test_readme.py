"""The documentation's examples are what the code takes: a user copies them first."""

import ast
import re
import shlex
from pathlib import Path

import pytest

import vecsearch
from vecsearch.arguments import parse
from vecsearch.commands import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _blocks(language: str) -> list[tuple[str, str]]:
    return [
        (f"{doc.name} block {i + 1}", block)
        for doc in DOCS
        for i, block in enumerate(re.findall(rf"```{language}\n(.*?)```", doc.read_text(), re.S))
    ]


def _command_lines() -> list[tuple[str, list[str]]]:
    """Each ``vecsearch …`` command in a shell block, without its comment, pipe or environment."""
    found = []
    for where, block in _blocks("bash"):
        for line in block.splitlines():
            for part in re.split(r"&&|\|", line):
                words = shlex.split(part, comments=True)
                while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                    words.pop(0)
                if words[:1] == ["vecsearch"]:
                    found.append((f"{where}: {shlex.join(words)}", words[1:]))
    return found


PYTHON, SHELL = _blocks("python"), _command_lines()


@pytest.mark.parametrize(("where", "block"), PYTHON, ids=[where for where, _ in PYTHON])
def test_python_examples_parse_and_name_what_exists(where, block):
    tree = ast.parse(block, where)
    named = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "vecsearch"
    }
    assert {name for name in named if not hasattr(vecsearch, name)} == set(), where


def test_the_readme_shows_examples():
    assert len(PYTHON) >= 3 and len(SHELL) >= 20  # the checks below would pass vacuously on a parsing slip


@pytest.mark.parametrize(("where", "argv"), SHELL, ids=[where for where, _ in SHELL])
def test_shell_examples_are_commands_the_command_line_takes(where, argv):
    if not argv or argv[0] in ("-h", "--help"):
        return
    assert argv[0] in COMMANDS, where
    parse(argv[0], COMMANDS[argv[0]], argv[1:])  # raises UsageError, as the command line would refuse it
