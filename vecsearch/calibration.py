"""Distance → similarity percentage, calibrated rather than rescaled.

At build time the index is queried with edited copies of its own images; the copy's source is a
true match, the other top hits are not. A monotone (isotonic) fit of "is the same picture" against
distance gives the probability a hit at that distance is the same picture, so "≥ 70%" means about
the same on any collection. The fitted curve is kept as knots and applied with ``np.interp``, so a
query needs no fitting library.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT = 1


@dataclass
class Calibration:
    distance: np.ndarray  # knots, increasing squared-L2 distances, starting at 0
    probability: np.ndarray  # non-increasing, 1.0 at distance 0
    fitted_on: dict = field(default_factory=dict)  # how many pairs, histograms of the distances

    def percent(self, distances: np.ndarray) -> np.ndarray:
        """Similarity in percent (0–100) for squared-L2 distances."""
        d = np.maximum(np.asarray(distances, np.float64), 0.0)
        return 100.0 * np.interp(d, self.distance, self.probability)

    def distance_for(self, percent: float) -> float:
        """The largest distance whose similarity is still ≥ ``percent`` (for range filters): the
        inverse of the piecewise-linear curve ``percent`` applies; -1 if no distance reaches it."""
        p = percent / 100.0
        ok = np.flatnonzero(self.probability >= p)
        if not len(ok):
            return -1.0
        i = int(ok[-1])
        if i == len(self.distance) - 1:
            return float(self.distance[i])
        drop = self.probability[i] - self.probability[i + 1]
        t = (self.probability[i] - p) / drop if drop > 0 else 0.0
        return float(self.distance[i] + t * (self.distance[i + 1] - self.distance[i]))

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "model": "isotonic",
                "distance": self.distance.round(6).tolist(),
                "probability": self.probability.round(6).tolist(),
                "fitted_on": self.fitted_on,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str, source: str = "calibration") -> Calibration:
        try:
            raw = json.loads(text)
            d, p = np.asarray(raw["distance"], np.float64), np.asarray(raw["probability"], np.float64)
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{source}: damaged calibration ({e})") from None
        if d.ndim != 1 or d.shape != p.shape or len(d) < 2 or np.any(np.diff(d) < 0):
            raise ValueError(f"{source}: damaged calibration (knots not increasing)")
        return cls(d, p, raw.get("fitted_on", {}))

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        return cls.from_json(Path(path).read_text(), os.fspath(path))


def fit(positive: np.ndarray, negative: np.ndarray, knots: int = 64) -> Calibration:
    """Fit P(same picture | distance) from distances of true matches and of non-matches."""
    from scipy.optimize import isotonic_regression  # half the import time of scikit-learn's

    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    if len(positive) == 0 or len(negative) == 0:
        raise ValueError("calibration needs both matching and non-matching pairs")
    x = np.r_[positive, negative]
    y = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    at, where, count = np.unique(
        x, return_inverse=True, return_counts=True
    )  # tied distances: one weighted point
    fitted = isotonic_regression(np.bincount(where, y) / count, weights=count, increasing=False).x
    top = float(x.max()) * 1.05 + 1e-6
    grid = np.unique(np.r_[0.0, np.quantile(x, np.linspace(0, 1, knots)), top])
    prob = np.interp(grid, at, fitted)  # linear between fitted points, flat beyond them
    prob[0] = 1.0  # the same image is 100%
    prob = np.minimum.accumulate(prob)
    bins = np.linspace(0, top, 41)
    fitted_on = {
        "positives": len(positive),
        "negatives": len(negative),
        "histogram_edges": bins.round(4).tolist(),
        "positive_histogram": np.histogram(positive, bins)[0].tolist(),
        "negative_histogram": np.histogram(negative, bins)[0].tolist(),
    }
    return Calibration(grid, prob, fitted_on)
