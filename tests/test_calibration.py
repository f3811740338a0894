import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import skip_without

import vecsearch
from vecsearch.calibrate import fit
from vecsearch.calibration import Calibration, gap_ratios, query_scales


def test_fit_is_monotone_and_exact_match_is_100():
    rng = np.random.default_rng(0)
    cal = fit(rng.uniform(0.0, 0.8, 500), rng.uniform(0.6, 2.0, 5000))
    d = np.linspace(0, 2.5, 200)
    p = cal.percent(d)
    assert cal.percent(np.array([0.0]))[0] == 100.0
    assert np.all(np.diff(p) <= 1e-9)
    assert p[d < 0.5].min() > 90 and p[d > 0.9].max() < 10
    assert cal.evidence_for(50) > 0.55


def test_a_fit_with_steps_keeps_them_where_its_data_are_sparse():
    """Copies near 0 and strangers near 1, a few of each between: where the quantile knots are far
    apart, a straight segment between them is not the fit, which is a low step there."""
    rng = np.random.default_rng(0)
    positive = np.r_[rng.uniform(0.0, 0.3, 300), rng.uniform(0.3, 0.45, 20), rng.uniform(0.55, 0.7, 3)]
    negative = np.r_[rng.uniform(0.8, 1.0, 3000), rng.uniform(0.3, 0.45, 10), rng.uniform(0.55, 0.7, 40)]
    coarse = fit(positive, negative, prior=None, knots_per_class=True)
    stepped = fit(positive, negative, prior=None, knots_per_class=True, steps=True)
    at = np.array([0.6])
    assert coarse.percent_at(at)[0] > 20  # the straight segment from about 0.43 to 0.7
    assert stepped.percent_at(at)[0] < 10  # 3 copies among 43 pairs
    assert stepped.percent_at(np.array([0.1]))[0] == 100.0 and stepped.percent_at(np.array([0.9]))[0] == 0.0


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


def test_a_querys_only_near_hit_is_read_from_the_lone_curve():
    cal = fit(np.array([0.1, 0.2, 0.3]), np.array([0.8, 0.9, 1.0]))
    cal.lone = (np.array([0.0, 0.2, 1.0]), np.array([1.0, 0.5, 0.0]))
    evidence = np.array([[0.2, 0.9, 1.0], [0.2, 0.5, 1.0]])  # the second query has two near hits
    p = cal.percent_of_hits(evidence)
    assert p[0, 0] == pytest.approx(50.0) and p[1, 0] == pytest.approx(cal.percent_at(0.2))
    np.testing.assert_allclose(p[:, 1:], cal.percent_at(evidence[:, 1:]))  # not near, or not alone
    gaps = gap_ratios(np.array([[0.2, 0.4, 0.4, 1.0]]), np.array([[0.2, 0.4, 0.4, 1.0]]))
    np.testing.assert_allclose(gaps, [[0.5, 0.4, 0.4, 1.0]])  # over the next larger hit; 1 after the last
    halved = cal.percent_of_hits(evidence, np.full(evidence.shape, 0.5))
    assert halved[0, 0] == pytest.approx(75.0) and halved[1, 0] == p[1, 0]  # the gap is the lone curve's
    again = Calibration.from_json(cal.to_json())
    np.testing.assert_allclose(again.percent_of_hits(evidence), p, atol=1e-4)
    raw = json.loads(cal.to_json())
    raw["lone"]["distance"] = raw["lone"]["distance"][::-1]
    with pytest.raises(ValueError, match="damaged calibration"):
        Calibration.from_json(json.dumps(raw), "x.json")
    cal.lone = None
    np.testing.assert_allclose(cal.percent_of_hits(evidence), cal.percent_at(evidence))


# ---- on real photos ----------------------------------------------------------------------------


def _copies_collection(tmp_path, examples, n_copies=5, seed=0):
    """The example photos and ``n_copies`` copy-like edits of each (as copies are made)."""
    import cv2

    from vecsearch.edits import copy_edit

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(seed)
    groups = {}
    for p in examples:
        name = Path(p).stem
        img = cv2.imread(p)
        cv2.imwrite(str(folder / f"{name}.jpg"), img)
        groups[str(folder / f"{name}.jpg")] = name
        for c in range(n_copies):
            out = folder / f"{name}-copy{c}.jpg"
            cv2.imwrite(str(out), copy_edit(img, rng))
            groups[str(out)] = name
    return folder, groups


@pytest.mark.slow
def test_a_collection_of_copies_gives_most_copies_70_percent_or_more(tmp_path, examples, encoder):
    folder, groups = _copies_collection(tmp_path, examples)
    index = vecsearch.build([folder], tmp_path / "idx", encoder=encoder, workers=0, quiet=True)
    paths = sorted(groups)
    alike, high = 0, 0
    for q, hits in zip(paths, index.search_many(paths, k=10)):
        for h in hits:
            if h.path != q and groups[h.path] == groups[q]:
                alike += 1
                high += h.similarity >= 70
    assert alike > 0 and high / alike > 0.5, (high, alike)


@pytest.mark.slow
def test_an_unrelated_photo_stays_low_in_a_tiny_index(tmp_path, examples, encoder):
    folder, _ = _copies_collection(tmp_path, [p for p in examples if "rocket" not in p][:4], n_copies=4)
    index = vecsearch.build([folder], tmp_path / "idx", encoder=encoder, workers=0, quiet=True)
    assert len(index) == 20
    rocket = next(p for p in examples if "rocket" in p)
    assert max(h.similarity for h in index.search(rocket, k=20)) < 5


def _rows(root: Path, name: str) -> list[dict]:
    import csv

    with open(root / name, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def copy_set(tmp_path_factory) -> tuple[Path, vecsearch.Index]:
    """The copy-detection set and an index of all of it."""
    root = skip_without("copies")
    paths = [str(root / r["path"]) for r in _rows(root, "groups.csv")]
    return root, vecsearch.build(paths, tmp_path_factory.mktemp("copy-set") / "index", quiet=True)


def _strangers(copies_root: Path, count: int = 20) -> list[str]:
    """Holidays photos of scenes the copy set took none of."""
    holidays = skip_without("holidays")
    taken = {
        json.loads(r["params"])["source"]
        for r in _rows(copies_root, "transforms.csv")
        if "source" in r["params"]
    }
    rows = _rows(holidays, "groups.csv")
    touched = {r["group"] for r in rows if f"holidays/{r['path']}" in taken}
    return [str(holidays / r["path"]) for r in rows if r["group"] not in touched][:count]


@pytest.mark.slow
def test_unrelated_photos_stay_low_among_copies_and_copies_from_outside_are_found(copy_set, tmp_path):
    """Unrelated photos meet a collection full of copies with nothing near them: the lone curve
    must not read their nearest images as the copies it has seen (21% on average before it, 62% at
    most). Copies of indexed photos from outside a collection without duplicates still reach 70%."""
    root, whole = copy_set
    strangers = _strangers(root)
    best = [hits[0].similarity for hits in whole.search_many(strangers, k=1)]
    assert len(best) == 20 and np.mean(best) < 2 and max(best) < 8, best
    kind = {str(root / r["path"]): (r["transform"], r["group"]) for r in _rows(root, "transforms.csv")}
    plain = [p for p, (t, _) in kind.items() if t in ("original", "distractor")]
    edited = [p for p, (t, _) in kind.items() if t not in ("original", "distractor")]
    index = vecsearch.build(plain, tmp_path / "originals", quiet=True)
    found = [
        next((h.similarity for h in hits if kind[h.path][1] == kind[q][1]), 0.0)
        for q, hits in zip(edited, index.search_many(edited, k=10))
    ]
    assert np.mean(np.array(found) >= 70) > 0.95
    best = [hits[0].similarity for hits in index.search_many(strangers, k=1)]
    assert np.mean(best) < 2 and max(best) < 8, best


@pytest.mark.slow
def test_unrelated_photos_stay_low_in_20_image_parts_of_the_copy_set(copy_set, tmp_path):
    """Few sources make few strangers for the lone curve, so the sources themselves are strangers
    too, and the curve keeps the steps of its fit, where an unrelated photo's nearest image falls."""
    root, whole = copy_set
    strangers = _strangers(root)
    paths = [str(root / r["path"]) for r in _rows(root, "groups.csv")]
    rng = np.random.default_rng(1)
    best = []
    for n in range(5):
        part = list(rng.choice(paths, 20, replace=False))
        index = vecsearch.build(part, tmp_path / f"part-{n}", encoder=whole.encoder, quiet=True)
        best += [hits[0].similarity for hits in index.search_many(strangers, k=1)]
    assert len(best) == 100 and max(best) < 5, sorted(best)[-5:]


@pytest.mark.slow
def test_the_same_pair_scores_alike_in_a_small_and_a_large_index(copy_set, tmp_path):
    """A random 50-image part of the copy-detection set, whole groups and distractors in the same
    proportions, against the whole set: the same query-hit pairs' percentages (the query itself is not
    a hit)."""
    root, large = copy_set
    rows = _rows(root, "groups.csv")
    by_group: dict[str, list[str]] = {}
    for r in rows:
        by_group.setdefault(r["group"], []).append(str(root / r["path"]))
    grouped = [g for g, m in by_group.items() if len(m) > 1]
    single = [m[0] for g, m in by_group.items() if len(m) == 1]
    rng = np.random.default_rng(0)
    share = sum(len(by_group[g]) for g in grouped) / len(rows)
    part: list[str] = []
    for g in rng.permutation(grouped):
        if len(part) + len(by_group[g]) > 50 * share:
            break
        part += by_group[g]
    part += list(rng.choice(single, 50 - len(part), replace=False))
    small = vecsearch.build(part, tmp_path / "small", encoder=large.encoder, quiet=True)  # the same vectors
    queries = [p for p in part if len(by_group[next(g for g, m in by_group.items() if p in m)]) > 1]
    moved = []
    for q, a, b in zip(queries, small.search_many(queries, k=6), large.search_many(queries, k=31)):
        in_large = {h.path: h.similarity for h in b}
        moved += [abs(h.similarity - in_large[h.path]) for h in a if h.path != q and h.path in in_large]
    assert moved and np.mean(moved) <= 5, (np.mean(moved), len(moved))


def test_calibrate_from_labels_round_trip_and_bad_labels(tmp_path, built, photo_dir):
    import subprocess
    import sys

    from conftest import snapshot, vs

    idx = tmp_path / "idx"
    shutil.copytree(built.path, idx)
    photos = sorted(str(p) for p in Path(photo_dir).rglob("*.jpg"))
    good = tmp_path / "labels.csv"
    good.write_text("path,group\n" + "".join(f"{p},{i % 3}\n" for i, p in enumerate(photos)))
    before = snapshot(idx)
    bad = {
        "unknown.csv": f"path,group\n{photos[0]},a\n/nowhere/x.jpg,b\n",
        "one-kind.csv": "a,b,same\n" + "".join(f"{photos[0]},{p},1\n" for p in photos[1:]),
        "header.csv": "file,label\nx.jpg,1\n",
        "no-rows.csv": "path,group\n",
        "too-few.csv": f"path,group\n{photos[0]},a\n{photos[1]},a\n",
    }
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        p = vs("calibrate", "--index", idx, "--labels", tmp_path / name)
        assert p.returncode == 2 and len(p.err.strip().splitlines()) == 1, (name, p.err)
        assert snapshot(idx) == before, name  # refused: nothing changed
    p = vs("calibrate", "--index", idx, "--labels", good)
    assert p.returncode == 0, p.err
    info = json.loads(vs("info", "--index", idx, "--format", "json").out)
    assert info["version"] == built.version.number + 1 and info["calibration"]["source"] == "labels"
    assert info["calibration"]["labels"] == str(good)
    table = vs("info", "--index", idx).out
    assert "from labels" in table
    opened = subprocess.run([sys.executable, "-c", f"import vecsearch; vecsearch.open({str(idx)!r})"])
    assert opened.returncode == 0
    # Verification knows copies, not the user's groups: it reorders, the labels' curve states the %.
    taught = vecsearch.open(idx)
    plain = {h.path: h.similarity for h in taught.search(photos[0], k=10)}
    checked = taught.search(photos[0], k=10, verify=True)
    assert any(h.inliers is not None for h in checked)
    assert all(h.similarity == pytest.approx(plain[h.path]) for h in checked if h.path in plain)


@pytest.mark.slow
def test_labels_of_half_the_scenes_teach_the_other_half(tmp_path):
    """Holidays groups are shots of one scene, not copies: labelled as groups for half of 120
    scenes, the refit must hold on the other half (an ECE the build-time curve, which means "the
    same picture", does not reach there)."""
    import csv

    from vecsearch.calibration import reliability
    from vecsearch.evaluate import load_labelled_set

    data = load_labelled_set(skip_without("holidays"))
    scenes = sorted(set(data.groups))[:120]
    scene = {p: g for p, g in zip(data.paths, data.groups) if g in scenes}
    paths = sorted(scene)
    built = vecsearch.build(paths, tmp_path / "idx", quiet=True)
    taught = set(scenes[::2])
    labels = tmp_path / "scenes.csv"
    with open(labels, "w", newline="") as f:
        csv.writer(f).writerows([("path", "group"), *((p, scene[p]) for p in paths if scene[p] in taught)])
    refit = vecsearch.recalibrate(tmp_path / "idx", labels, quiet=True)
    queries = [p for p in paths if scene[p] not in taught]

    def ece(index) -> float:
        stated, alike = [], []
        for q, hits in zip(queries, index.search_many(queries, k=11)):
            for h in [h for h in hits if h.path != q][:10]:
                stated.append(h.similarity)
                alike.append(scene[h.path] == scene[q])
        return reliability(np.array(stated), np.array(alike))[1]

    before, after = ece(built), ece(refit)
    assert after <= 0.04 and after < before - 0.03, (before, after)
