"""The command line, checked whole before a command runs.

A command is a plain function, the same one the Python API could call: its signature says which
options it takes and of what kind (``Annotated[int, Value("N", low=1)]``), its docstring what
they mean. ``parse`` reads an argument list against both with argparse (no abbreviations, values
left as the text typed), then converts and checks every value: paths stay text, numbers must be
numbers in range, a choice must be one of its choices, an option that needs a value must get one.
Anything wrong is refused in one line in the tool's words (``UsageError``) before the command is
called. ``help_text`` writes a command's help page from the same two sources.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import math
import re
import textwrap
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

WIDTH = 100


class UsageError(ValueError):
    """The command line is wrong; the message says how, in one line."""


@dataclass(frozen=True)
class Value:
    """How a command-line value is shown (``metavar``) and checked: numbers within [low, high]
    (``above``: strictly more than low), or read by ``parse`` (which raises ValueError), described
    in help by ``words``."""

    metavar: str = "TEXT"
    low: float | None = None
    high: float | None = None
    above: bool = False
    parse: Callable[[str], Any] | None = None
    words: str | None = None


@dataclass
class Option:
    """One parameter of a command, as the command line sees it."""

    name: str
    kind: type  # bool, int, float or str
    value: Value
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    positional: bool = False

    @property
    def flag(self) -> str:
        return self.value.metavar + "..." if self.positional else "--" + self.name.replace("_", "-")

    @property
    def short(self) -> str | None:
        """``-k`` beside ``--k`` for a one-letter option, as other tools spell it."""
        return f"-{self.name}" if len(self.name) == 1 and not self.positional else None

    @property
    def metavar(self) -> str:
        return "|".join(self.choices) if self.choices else self.value.metavar

    def described(self) -> str:
        """The help line's text: what it means, then for numbers and sizes their kind, and the
        default where there is one."""
        kind = self.words() if self.kind in (int, float) or self.value.parse else ""
        extra = "; ".join(x for x in (kind, _default(self)) if x)
        return f"{self.help} ({extra})" if extra else self.help

    def words(self) -> str:
        """The kind of value, in plain words: 'a whole number of at least 1'."""
        v = self.value
        if v.words:
            return v.words
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind in (int, float):
            noun = "a whole number" if self.kind is int else "a number"
            if v.low is not None and v.high is not None:
                low, high = _num(v.low), _num(v.high)
                return f"{noun} above {low} and at most {high}" if v.above else f"{noun} from {low} to {high}"
            if v.low is not None:
                return f"{noun} {'above' if v.above else 'of at least'} {_num(v.low)}"
            return noun
        return "text"

    def convert(self, text: str) -> Any:
        """The value of ``text``, or UsageError saying what it must be."""
        v = self.value
        wrong = UsageError(f"{self.flag} must be {self.words()}, not {text!r}")
        if v.parse is not None:
            try:
                return v.parse(text)
            except ValueError:
                raise wrong from None
        if self.choices:
            if text not in self.choices:
                raise wrong
            return text
        if self.kind is int:
            if not re.fullmatch(r"[+-]?\d+", text.strip()):
                raise wrong
            number: float = int(text)
        elif self.kind is float:
            try:
                number = float(text)
            except ValueError:
                raise wrong from None
            if not math.isfinite(number):
                raise wrong
        else:
            return text
        too_low = v.low is not None and (number <= v.low if v.above else number < v.low)
        if too_low or (v.high is not None and number > v.high):
            raise wrong
        return number


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass
class Doc:
    """A command's docstring, in parts: summary, description, one text per parameter, examples."""

    summary: str
    description: str
    params: dict[str, str]
    examples: list[str]
    notes: dict[str, str]  # other sections ("Exit status") as they are written


def read_doc(fn: Callable) -> Doc:
    """Split a Google-style docstring (summary, text, ``Args:``, ``Examples:``, other sections)."""
    text = inspect.getdoc(fn) or ""
    parts = re.split(r"^(\w[\w ]*):\s*$", text, flags=re.M)
    head, sections = parts[0].strip(), dict(zip(parts[1::2], parts[2::2]))
    summary, _, description = head.partition("\n\n")
    params: dict[str, str] = {}
    for line in textwrap.dedent(sections.pop("Args", "")).splitlines():
        m = re.match(r"(\w+): (.*)", line)
        if m:
            params[m.group(1)] = m.group(2).strip()
        elif line.strip() and params:
            last = next(reversed(params))
            params[last] += " " + line.strip()
    examples = [line.strip() for line in sections.pop("Examples", "").splitlines() if line.strip()]
    notes = {k: textwrap.dedent(v).strip("\n") for k, v in sections.items()}
    return Doc(summary.replace("\n", " "), description.strip(), params, examples, notes)


def options(fn: Callable) -> list[Option]:
    """The command line's view of ``fn``'s parameters, in order."""
    hints = typing.get_type_hints(fn, include_extras=True)
    doc = read_doc(fn)
    out = []
    for p in inspect.signature(fn).parameters.values():
        hint = hints.get(p.name, str)
        value = Value()
        if typing.get_origin(hint) is typing.Annotated:
            hint, *extra = typing.get_args(hint)
            value = next((x for x in extra if isinstance(x, Value)), value)
        args = [a for a in typing.get_args(hint) if a is not type(None)]  # X | None → X
        if typing.get_origin(hint) is typing.Literal:
            kind, choices = str, tuple(typing.get_args(hint))
        elif args and typing.get_origin(args[0]) is typing.Literal:
            kind, choices = str, tuple(typing.get_args(args[0]))
        else:
            kind, choices = (args[0] if args else hint), None
        if kind not in (bool, int, float, str):
            kind = str
        positional = p.kind is inspect.Parameter.VAR_POSITIONAL
        default = None if positional else p.default
        out.append(Option(p.name, kind, value, default, doc.params.get(p.name, ""), choices, positional))
    return out


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(message)


class _Once(argparse.Action):
    """Store a value, refusing an option given twice (the first would be silently lost)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest) is not None:
            raise UsageError(f"{self.option_strings[0]} was given twice")
        setattr(namespace, self.dest, values)


class _Flag(argparse.Action):
    def __init__(self, option_strings, dest, **kw):
        super().__init__(option_strings, dest, nargs=0, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, True)


def _parser(opts: list[Option]) -> _Parser:
    parser = _Parser(add_help=False, allow_abbrev=False, prog="vecsearch")
    for o in opts:
        if o.positional:
            parser.add_argument(o.name, nargs="*", default=[])
            continue
        names = [o.flag] + ([f"--{o.name}"] if "_" in o.name else [])  # the Python spelling works too
        names += [o.short] if o.short else []
        if o.kind is bool:
            parser.add_argument(*names, dest=o.name, action=_Flag, default=None)
        else:
            parser.add_argument(*names, dest=o.name, action=_Once, default=None)
    return parser


def wants_help(argv: Sequence[str]) -> bool:
    before = list(argv[: argv.index("--")]) if "--" in argv else list(argv)
    return "-h" in before or "--help" in before


def parse(command: str, fn: Callable, argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """(positional values, keyword values) for ``fn`` from ``argv``, every value checked; or
    UsageError in one line."""
    opts = options(fn)
    by_name = {o.name: o for o in opts}
    flags = [o.flag for o in opts if not o.positional]
    try:
        ns, extra = _parser(opts).parse_known_intermixed_args(list(argv))
    except UsageError as e:
        raise UsageError(_plain(str(e), by_name)) from None
    for token in extra:
        if token.startswith("-") and token != "-":
            raise UsageError(_unknown(command, token.split("=")[0], flags))
        raise UsageError(
            f"'vecsearch {command}' takes no {token!r} here"
            + (f" (its options: {', '.join(flags)})" if flags else " (it takes no arguments)")
        )
    positional: list[str] = []
    keywords: dict[str, Any] = {}
    for o in opts:
        given = getattr(ns, o.name)
        if o.positional:
            positional = list(given)
        elif given is not None:
            keywords[o.name] = True if o.kind is bool else o.convert(given)
    return positional, keywords


def _plain(message: str, by_name: dict[str, Option]) -> str:
    """argparse's words for a missing value, in ours."""
    m = re.match(r"argument (\S+?)(?:/\S+)?: expected one argument", message)
    if m:
        o = by_name.get(m.group(1).lstrip("-").replace("-", "_"))
        return f"{m.group(1)} needs a value" + (f": {o.words()}" if o else "")
    m = re.match(r"argument (\S+?)(?:/\S+)?: ignored explicit argument (.*)", message)
    if m:
        return f"{m.group(1)} takes no value (it is on or off), not {m.group(2)}"
    return message


def _unknown(command: str, flag: str, flags: list[str]) -> str:
    near = difflib.get_close_matches(flag, flags, n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]}?" if near else ""
    valid = f" (its options: {', '.join(flags)})" if flags else " (it takes no options)"
    return f"'vecsearch {command}' has no option {flag}{hint}{valid}"


def help_text(command: str, fn: Callable) -> str:
    """The help page of a command: usage, summary, its arguments and options with their kind and
    default, examples, and any other section of the docstring."""
    opts, doc = options(fn), read_doc(fn)
    pos = [o for o in opts if o.positional]
    usage = " ".join([f"vecsearch {command}", *(f"[{o.flag}]" for o in pos), "[options]"])
    out = [f"usage: {usage}", "", _wrap(doc.summary, 0)]
    if doc.description:
        out += [line for p in doc.description.split("\n\n") for line in ("", _wrap(p, 0))]
    if pos:
        out += ["", "arguments:", *(_entry(o.flag, o.help) for o in pos)]
    out += ["", "options:"]
    for o in opts:
        if o.positional:
            continue
        name = ", ".join(n for n in (o.short, o.flag) if n)
        name = name if o.kind is bool else f"{name} {o.metavar}"
        out.append(_entry(name, o.help if o.kind is bool else o.described()))
    out.append(_entry("-h, --help", "show this help"))
    for title, body in doc.notes.items():
        out += ["", f"{title.lower()}:", textwrap.indent(body, "  ")]
    if doc.examples:
        out += ["", "examples:", *(f"  {e}" for e in doc.examples)]
    return "\n".join(out) + "\n"


def _default(o: Option) -> str:
    if o.default is None or o.default is False or o.default is inspect.Parameter.empty:
        return ""
    return f"default: {_num(o.default) if isinstance(o.default, (int, float)) else o.default}"


def _entry(name: str, text: str) -> str:
    lead = f"  {name}"
    body = textwrap.wrap(text, WIDTH - 26, break_on_hyphens=False) or [""]
    first = f"{lead:<26}{body[0]}" if len(lead) < 25 else f"{lead}\n{'':<26}{body[0]}"
    return "\n".join([first, *(f"{'':<26}{line}" for line in body[1:])])


def _wrap(text: str, indent: int) -> str:
    return textwrap.fill(
        " ".join(text.split()), WIDTH, initial_indent=" " * indent, subsequent_indent=" " * indent
    )


def overview(commands: dict[str, Callable]) -> str:
    """The page of ``vecsearch --help``: every command with its summary."""
    lines = ["usage: vecsearch COMMAND [arguments] [options]", "", "commands:"]
    lines += [_entry(name, read_doc(fn).summary) for name, fn in commands.items()]
    lines += ["", "'vecsearch COMMAND --help' tells more about each one."]
    return "\n".join(lines) + "\n"


def closest(name: str, choices: Sequence[str]) -> str | None:
    near = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return near[0] if near else None
