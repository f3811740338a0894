"""The commands of ``vecsearch``: thin functions over the Python API, with the command line's
checks, outputs and exit statuses.

Each signature is read by ``arguments.py`` (types, ranges, metavars) and each docstring is the
command's help page. A command returns its exit status. Results go to stdout, everything else to
stderr. Heavy modules are imported inside the commands, so ``--help`` and a query load only what
they need.
"""

from .changing import add, build, calibrate, remove
from .encoders import embed, train
from .inspecting import check, info
from .searching import dedup, demo, query
from .serving import serve

COMMANDS = {
    "build": build,
    "add": add,
    "remove": remove,
    "query": query,
    "dedup": dedup,
    "info": info,
    "check": check,
    "calibrate": calibrate,
    "embed": embed,
    "train": train,
    "serve": serve,
    "demo": demo,
}
