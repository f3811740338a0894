"""The calibration curve: distance → similarity percentage, on the query side.

The curve is fitted when an index is built (``calibrate.py``) and kept as knots: P(same picture)
at increasing squared-L2 distances. Applying it is ``np.interp``, so a query needs no fitting
library.
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

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        return cls.from_json(Path(path).read_text(), os.fspath(path))
