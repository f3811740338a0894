"""The ``vecsearch`` command: the whole command line is checked against the command's signature
(``arguments.py``) before the command runs (``commands/``).

Errors a user can fix (a bad argument, a missing or damaged index, an unreadable query, no images)
print one line on stderr and exit 2; see each command's help for its other exit statuses.
"""

from __future__ import annotations

import os
import sys

from .arguments import UsageError, closest, help_text, overview, parse, wants_help
from .commands import COMMANDS
from .commands.common import ERROR


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        (sys.stdout if args else sys.stderr).write(overview(COMMANDS))
        return 0 if args else ERROR
    if args[0] == "--version":
        from importlib.metadata import version

        print(f"vecsearch {version('vecsearch')}")
        return 0
    name, rest = args[0], args[1:]
    command = COMMANDS.get(name)
    if command is None:
        near = closest(name, list(COMMANDS))
        hint = f"; did you mean '{near}'?" if near else ""
        print(
            f"vecsearch: error: unknown command '{name}'{hint} ('vecsearch --help' lists them)",
            file=sys.stderr,
        )
        return ERROR
    if wants_help(rest):
        sys.stdout.write(help_text(name, command))
        return 0
    try:
        positional, keywords = parse(name, command, rest)
        return command(*positional, **keywords)
    except KeyboardInterrupt:
        print("vecsearch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `vecsearch query … | head`: the reader has gone, so be quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (UsageError, ValueError, OSError, RuntimeError) as e:  # IndexDirError, ImageError among them
        print(f"vecsearch: error: {_one_line(e)}", file=sys.stderr)
        return ERROR


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    first = text[0] if text else type(e).__name__
    if isinstance(e, OSError) and e.filename and str(e.filename) not in first:
        first = f"{e.filename}: {first}"
    return first


def run() -> None:
    """The console script: ``main``, then out without tearing the interpreter down. Freeing the
    index, the encoder and the libraries' state at exit is a fifth of a query process's time, and
    nothing is left to flush once the output has been."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
