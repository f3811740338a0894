"""VLAD: sum the residuals of an image's descriptors to their nearest visual words.

Works on a whole batch of images at once: one nearest-centre search over every descriptor of the
batch and one segmented sum, instead of per-image loops, since per image the work is memory-bound.
"""
from __future__ import annotations

import numpy as np


def unpack_bits(desc: np.ndarray) -> np.ndarray:
    """Binary descriptors (m, 32) uint8 → (m, 256) float32 of 0/1, the space the vocabulary lives in."""
    return np.unpackbits(desc, axis=1).astype(np.float32)


def nearest_centre(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (L2) for each row of x."""
    scores = x @ centres.T - 0.5 * np.einsum("ij,ij->i", centres, centres)[None, :]
    return np.argmax(scores, axis=1)


def vlad(descriptors: list[np.ndarray], centres: np.ndarray) -> np.ndarray:
    """(n, k·d) float32 VLAD vectors, power-law (signed √), intra- and L2-normalised.

    ``descriptors`` holds one (m_i, 32) uint8 array per image; an image without descriptors gets a
    zero row.
    """
    k, d = centres.shape
    n = len(descriptors)
    out = np.zeros((n * k, d), np.float32)
    counts = np.array([len(x) for x in descriptors])
    if counts.sum() > 0:
        x = unpack_bits(np.concatenate([x for x in descriptors if len(x)]))
        owner = np.repeat(np.arange(n), counts)
        assign = nearest_centre(x, centres)
        cell = owner * k + assign
        order = np.argsort(cell, kind="stable")
        cell_sorted = cell[order]
        starts = np.flatnonzero(np.r_[True, cell_sorted[1:] != cell_sorted[:-1]])
        resid = x[order] - centres[assign[order]]
        out[cell_sorted[starts]] = np.add.reduceat(resid, starts, axis=0)
    out = np.sign(out) * np.sqrt(np.abs(out))
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    out = out.reshape(n, k * d)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out
