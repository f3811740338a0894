"""Pure functions from pixels to features: no files, no indexes."""

from .colour import colour_histogram, colourless
from .orb import orb_descriptors
from .vlad import vlad

__all__ = ["colour_histogram", "colourless", "orb_descriptors", "vlad"]
