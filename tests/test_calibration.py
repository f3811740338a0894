import numpy as np
import pytest

from vecsearch.calibrate import fit
from vecsearch.calibration import Calibration, query_scales


def test_fit_is_monotone_and_exact_match_is_100():
    rng = np.random.default_rng(0)
    cal = fit(rng.uniform(0.0, 0.8, 500), rng.uniform(0.6, 2.0, 5000))
    d = np.linspace(0, 2.5, 200)
    p = cal.percent(d)
    assert cal.percent(np.array([0.0]))[0] == 100.0
    assert np.all(np.diff(p) <= 1e-9)
    assert p[d < 0.5].min() > 90 and p[d > 0.9].max() < 10
    assert cal.evidence_for(50) > 0.55


def test_json_round_trip_and_damage():
    cal = fit(np.array([0.1, 0.2, 0.3]), np.array([0.5, 0.9, 1.2]))
    again = Calibration.from_json(cal.to_json())
    np.testing.assert_allclose(
        again.percent(np.array([0.25, 0.7])), cal.percent(np.array([0.25, 0.7])), atol=1e-4
    )
    with pytest.raises(ValueError, match="damaged calibration"):
        Calibration.from_json('{"distance": [1, 0], "probability": [1, 0]}', "x.json")


def test_a_curve_of_raw_distances_from_an_older_index_still_answers_as_it_did():
    old = '{"format": 1, "model": "isotonic", "distance": [0, 0.5, 1], "probability": [1, 0.5, 0]}'
    cal = Calibration.from_json(old)
    assert not cal.relative and cal.hits_needed(10) == 10
    np.testing.assert_allclose(
        cal.percent(np.array([[0.25, 0.75]]), cal.scales(np.array([[0.25, 0.75]]), None)), [[75, 25]]
    )


def test_relative_evidence_is_the_distance_over_the_queries_scale():
    cal = fit(np.array([0.1, 0.2, 0.3]), np.array([0.8, 0.9, 1.0]))
    hits = np.array([[0.2, 0.5, 1.0, np.inf], [0.4, 1.0, 2.0, 2.0]])
    refs = np.array([[3.0, 3.0], [3.0, 3.0]])
    scales = query_scales(hits, refs, rank=3)
    np.testing.assert_allclose(scales, [1.0, 2.0])  # the 3rd smallest of each query's distances
    np.testing.assert_allclose(cal.evidence(hits, scales)[:, 0], [0.2, 0.2])
    assert cal.percent(hits, scales)[0, 0] == cal.percent(hits, scales)[1, 0]  # the same evidence
