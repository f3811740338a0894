"""The calibration curve, on the query side: a hit's evidence → its similarity percentage.

The percentage is the estimated probability that the hit is the same picture as the query (the
same photo, after everyday edits: resized, cropped, re-compressed, recoloured, mirrored, greyscale,
stamped). The evidence of a hit is its distance relative to the query's own scale: the distance of
the query's ``rank``-th nearest image, the first beyond a top ten. A copy's scale is set by the
non-matches around it, so a harshly edited copy, which lies close to everything, is not taken for
a near one, and an ordinary photo's nearest unrelated images do not look like copies. The
reference photos shipped with vecsearch (their vectors are in the file) count as images for the
scale, so a query in a tiny index has one too.

A hit that is its query's only near one (no other hit under ``NEAR`` evidence) is read from a curve
of its own, ``lone``, where the fit has one. The main curve is learned from queries with relatives
in the collection, which show other near hits; read for a query without any (an unrelated photo, a
copy of a photo the collection holds once), it took that query's nearest images for the copies it
had seen (bench/RESULTS.md). The lone curve is learned from copies whose source is their only near
hit and from the same copies with their relatives taken away, one of each per copy: it assumes that
as many queries have a copy in the collection as have none (``calibrate.py``). It reads the
evidence times the hit's gap to the next one (``gap_ratios``): a copy stands out from the images
after it, an unrelated photo's nearest image does not.

The curve is fitted when an index is built (``calibrate.py``) and kept as knots; applying it is
``np.interp``, so a query needs no fitting library. Files written before the relative evidence
(``model: isotonic``) map raw distances and still answer as they did.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT = 2
RANK = 11  # a query's scale: the distance of its 11th nearest image (the index and the references)
#: Evidence under which a hit is as near as copies are (``lone``; the fit's duplicate rule too).
NEAR = 0.7


def query_scales(
    hit_distances: np.ndarray, background_distances: np.ndarray | None, rank: int = RANK
) -> np.ndarray:
    """Each query's scale: the ``rank``-th smallest of its distances to its hits (inf where
    missing) and to the reference vectors."""
    pool = np.atleast_2d(np.asarray(hit_distances, np.float64))
    if background_distances is not None:
        pool = np.hstack([pool, np.atleast_2d(background_distances)])
    kth = min(rank, pool.shape[1]) - 1
    scale = np.partition(pool, kth, axis=1)[:, kth]
    return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)


def only_near(evidence: np.ndarray) -> np.ndarray:
    """Which hits (rows: a query's hits) have no other hit of their query under ``NEAR``."""
    near = np.asarray(evidence) < NEAR
    return near.sum(-1, keepdims=True) - near == 0


def gap_ratios(distances: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Each distance over the next larger one of its row's ``pool`` (a query's hits), 1 where none
    is larger: how far a hit stands out from the indexed image after it, the ratio test of
    local-feature matching, which tells a copy, alone near its query, from an unrelated photo's
    nearest image better than the evidence alone (bench/TUNING.md). Not the reference photos: a
    collection may hold them, and their twin would hide any gap."""
    distances, pool = np.atleast_2d(distances), np.sort(np.atleast_2d(pool), axis=1)
    ends = np.hstack([pool, np.full((len(pool), 1), np.inf)])
    after = np.array([row[np.searchsorted(row, d, side="right")] for row, d in zip(ends, distances)])
    return np.where(np.isfinite(after) & np.isfinite(distances), distances / after, 1.0)


@dataclass
class Calibration:
    knots: np.ndarray  # increasing evidence values (raw squared-L2 distances for the legacy model)
    probability: np.ndarray  # non-increasing, 1.0 at 0
    fitted_on: dict = field(default_factory=dict)  # where the fit came from, its pairs, histograms
    relative: bool = True  # False: a legacy curve of raw distances
    background: np.ndarray | None = None  # reference vectors, (b, dim): they count for a query's scale
    rank: int = RANK
    lone: tuple[np.ndarray, np.ndarray] | None = None  # knots and probability for a query's only near hit

    @property
    def taught(self) -> bool:
        """Fitted on a user's labels, whose meaning of "the same" verification does not know."""
        return self.fitted_on.get("source") == "labels"

    def hits_needed(self, k: int) -> int:
        """How many hits a search must fetch to give ``k`` of them their percentages."""
        return max(k, self.rank) if self.relative else k

    def scales(self, hit_distances: np.ndarray, background_distances: np.ndarray | None) -> np.ndarray:
        """Each query's scale (``query_scales``); ones for a legacy curve."""
        if not self.relative:
            return np.ones(len(np.atleast_2d(hit_distances)))
        return query_scales(hit_distances, background_distances, self.rank)

    def evidence(self, distances: np.ndarray, scales: np.ndarray | None = None) -> np.ndarray:
        d = np.maximum(np.asarray(distances, np.float64), 0.0)
        if not self.relative or scales is None:
            return d
        return d / np.asarray(scales, np.float64).reshape(-1, *([1] * (d.ndim - 1)))

    def percent(self, distances: np.ndarray, scales: np.ndarray | None = None) -> np.ndarray:
        """Similarity in percent (0–100) of hits at these squared-L2 distances from queries of
        these scales (row by row)."""
        return self.percent_at(self.evidence(distances, scales))

    def percent_at(self, evidence: np.ndarray) -> np.ndarray:
        """Similarity in percent (0–100) at these evidence values, of hits among other near ones."""
        return 100.0 * np.interp(evidence, self.knots, self.probability)

    def percent_of_hits(self, evidence: np.ndarray, gaps: np.ndarray | None = None) -> np.ndarray:
        """Similarity in percent of each query's hits (rows: all the hits a search fetched, at
        least ``rank``), the lone curve for a hit that is its query's only near one, read at its
        evidence times its ``gaps`` (``gap_ratios``)."""
        evidence = np.atleast_2d(evidence)
        main = self.percent_at(evidence)
        if self.lone is None or not self.relative:
            return main
        lone = 100.0 * np.interp(evidence * (1.0 if gaps is None else gaps), *self.lone)
        return np.where(only_near(evidence), lone, main)

    def evidence_for(self, percent: float) -> float:
        """The largest evidence whose similarity is still ≥ ``percent`` (for range filters; times a
        query's scale, a distance): the inverse of the piecewise-linear curve; -1 if none reaches it."""
        p = percent / 100.0
        ok = np.flatnonzero(self.probability >= p)
        if not len(ok):
            return -1.0
        i = int(ok[-1])
        if i == len(self.knots) - 1:
            return float(self.knots[i])
        drop = self.probability[i] - self.probability[i + 1]
        t = (self.probability[i] - p) / drop if drop > 0 else 0.0
        return float(self.knots[i] + t * (self.knots[i + 1] - self.knots[i]))

    def to_json(self) -> str:
        raw = {
            "format": FORMAT,
            "model": "relative" if self.relative else "isotonic",
            "distance": self.knots.round(6).tolist(),  # the knots' name from format 1
            "probability": self.probability.round(6).tolist(),
            "fitted_on": self.fitted_on,
        }
        if self.relative:
            raw["rank"] = self.rank
            raw["background"] = [] if self.background is None else np.round(self.background, 6).tolist()
        if self.lone is not None:
            raw["lone"] = {
                "distance": self.lone[0].round(6).tolist(),
                "probability": self.lone[1].round(6).tolist(),
            }
        return json.dumps(raw, indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = "calibration") -> Calibration:
        try:
            raw = json.loads(text)
            d, p = np.asarray(raw["distance"], np.float64), np.asarray(raw["probability"], np.float64)
            relative = raw.get("model", "isotonic") == "relative"
            background = (
                np.asarray(raw.get("background") or np.zeros((0, 0)), np.float32) if relative else None
            )
            rank = int(raw.get("rank", RANK))
            lone = raw.get("lone")
            lone = (
                None
                if lone is None
                else tuple(np.asarray(lone[k], np.float64) for k in ("distance", "probability"))
            )
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{source}: damaged calibration ({e})") from None
        if int(raw.get("format", 1)) > FORMAT:
            raise ValueError(
                f"{source}: calibration format {raw['format']} is newer than this vecsearch reads"
            )
        for knots, prob in [(d, p)] + ([lone] if lone is not None else []):
            if knots.ndim != 1 or knots.shape != prob.shape or len(knots) < 2 or np.any(np.diff(knots) < 0):
                raise ValueError(f"{source}: damaged calibration (knots not increasing)")
        if background is not None and background.size == 0:
            background = None
        return cls(d, p, raw.get("fitted_on", {}), relative, background, rank, lone)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        return cls.from_json(Path(path).read_text(), os.fspath(path))


def reliability(similarity: np.ndarray, relevant: np.ndarray, bins: int = 10) -> tuple[list[dict], float]:
    """Reliability table of reported percentages against the truth, and the expected calibration error.

    ``similarity`` in percent; each bin reports its count, mean stated %, and fraction truly relevant.
    """
    p = np.clip(np.asarray(similarity, float) / 100.0, 0, 1)
    relevant = np.asarray(relevant, bool)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        m = which == b
        if not m.any():
            continue
        stated, observed = float(p[m].mean()), float(relevant[m].mean())
        ece += m.sum() / len(p) * abs(stated - observed)
        table.append(
            {
                "bin": f"{edges[b] * 100:.0f}-{edges[b + 1] * 100:.0f}%",
                "n": int(m.sum()),
                "stated": stated,
                "observed": observed,
            }
        )
    return table, float(ece)
