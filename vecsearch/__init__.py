"""vecsearch: find the images that look like this one, with similarity percentages you can trust.

import vecsearch
index = vecsearch.build(["~/photos"], "indexes/photos")
index = vecsearch.open("indexes/photos")
hits = index.search("q.jpg", k=20, min_similarity=70)
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .embedding import embed, train
    from .encoder import Encoder, EncoderConfig
    from .pipeline import add, build, recalibrate, remove
    from .search import Hit, Index
    from .server import create_app

__all__ = [
    "Encoder",
    "EncoderConfig",
    "Hit",
    "ImageError",
    "Index",
    "__version__",
    "add",
    "build",
    "create_app",
    "embed",
    "open",
    "recalibrate",
    "remove",
    "train",
]

_LAZY = {
    "build": ("pipeline", "build"),
    "Index": ("search", "Index"),
    "Hit": ("search", "Hit"),
    "Encoder": ("encoder", "Encoder"),
    "EncoderConfig": ("encoder", "EncoderConfig"),
    "ImageError": ("images", "ImageError"),
    "add": ("pipeline", "add"),
    "recalibrate": ("pipeline", "recalibrate"),
    "remove": ("pipeline", "remove"),
    "embed": ("embedding", "embed"),
    "train": ("embedding", "train"),
    "create_app": ("server", "create_app"),
}


def open(path):
    """Open the index directory at ``path`` for search (see ``Index``)."""
    from .search import open_index

    return open_index(path)


def __getattr__(name: str) -> Any:
    # Lazy: a CLI query must not pay for importing the build pipeline.
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'vecsearch' has no attribute {name!r}")
