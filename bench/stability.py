"""How steady the percentage is: across calibration draws, file names, index sizes and make-ups,
and after a refit on labels. Used by bench/quality.py, which prints and records the figures.

Every figure is over the top-10 hits of every query (the query itself excluded), a hit being a
true match when it shares the query's group, as in the quality tables.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import numpy as np

import vecsearch
from vecsearch.calibration import reliability
from vecsearch.evaluate import LabelledSet, evaluate_search, load_labelled_set, refit


def _top10(
    index, paths: list[str], groups: dict[str, object], queries: list[str], k: int = 10, verify: bool = False
):
    """(similarity, relevant, hits) of the top-10 hits of each query, the query itself left out."""
    sims, rels, hits = [], [], []
    for q, found in zip(queries, index.search_many(queries, k=k + 1, verify=verify)):
        top = [h for h in found if h.path != q][:k]
        sims += [h.similarity for h in top]
        rels += [groups[h.path] == groups[q] for h in top]
        hits.append({h.path: h.similarity for h in top})
    return np.array(sims), np.array(rels, bool), hits


def precision_recall(sim: np.ndarray, rel: np.ndarray) -> dict[str, float]:
    out = {}
    for t in (70, 90):
        stated = sim >= t
        out[f"P@{t}"] = float(rel[stated].mean()) if stated.any() else float("nan")
        out[f"R@{t}"] = float(stated[rel].mean()) if rel.any() else float("nan")
    return out


def renamed(data: LabelledSet, work: Path, index_dir: Path) -> dict:
    """The set copied under other names (the hash of each path), built again: its ECE, and how far
    the same pairs' percentages moved."""
    folder = work / "renamed-files"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    new_name = {}
    for p in data.paths:
        target = folder / (hashlib.sha1(p.encode()).hexdigest()[:16] + Path(p).suffix)
        shutil.copyfile(p, target)
        new_name[p] = str(target)
    old = vecsearch.open(index_dir)
    new = vecsearch.build([new_name[p] for p in data.paths], work / "renamed-index", quiet=True)
    groups = dict(zip(data.paths, data.groups)) | {new_name[p]: g for p, g in zip(data.paths, data.groups)}
    queries = [data.paths[q] for q in data.queries]
    s_old, r_old, h_old = _top10(old, data.paths, groups, queries)
    s_new, r_new, h_new = _top10(new, data.paths, groups, [new_name[q] for q in queries])
    back = {v: k for k, v in new_name.items()}
    moved = [abs(s - a[back[p]]) for a, b in zip(h_old, h_new) for p, s in b.items() if back[p] in a]
    return {"ECE": reliability(s_old, r_old)[1], "ECE renamed": reliability(s_new, r_new)[1], **_moved(moved)}


def _moved(moved: list[float]) -> dict:
    """How far the same pairs' percentages moved, in points."""
    m = np.array(moved)
    return {
        "pairs": len(m),
        "moved mean": float(m.mean()),
        "moved p90": float(np.percentile(m, 90)),
        "moved max": float(m.max()),
        "moved over 5": int((m > 5).sum()),
    }


def _part(data: LabelledSet, size: int, rng) -> list[str]:
    """A random part of the set with its make-up: whole groups and single images in the same shares."""
    by_group: dict[int, list[str]] = {}
    for p, g in zip(data.paths, data.groups):
        by_group.setdefault(int(g), []).append(p)
    grouped = [g for g, m in by_group.items() if len(m) > 1]
    single = [m[0] for m in by_group.values() if len(m) == 1]
    share = sum(len(by_group[g]) for g in grouped) / len(data.paths)
    part: list[str] = []
    for g in rng.permutation(grouped):
        if len(part) + len(by_group[g]) > size * share:
            break
        part += by_group[g]
    return part + list(rng.choice(single, size - len(part), replace=False))


def sizes(
    data: LabelledSet, work: Path, index_dir: Path, parts: int = 5, size: int = 50, verify: bool = False
) -> dict:
    """Random ``size``-image parts of the set (its make-up kept), built with the whole set's encoder:
    how far the same query-hit pairs' percentages (the top-10 hits in the part, the query left out)
    move between a part and the whole set; with ``verify``, the same parts' pairs with verification
    on too (``"verify"``)."""
    whole = vecsearch.open(index_dir)
    groups = dict(zip(data.paths, data.groups))
    rng = np.random.default_rng(0)
    moved: dict[bool, list[float]] = {checked: [] for checked in ((False, True) if verify else (False,))}
    for n in range(parts):
        part = _part(data, size, rng)
        small = vecsearch.build(part, work / f"size-{n}", encoder=whole.encoder, quiet=True)
        queries = [p for p in part if (data.groups == groups[p]).sum() > 1]
        for checked in moved:
            in_part = _top10(small, part, groups, queries, verify=checked)[2]
            in_whole = _top10(whole, data.paths, groups, queries, k=50, verify=checked)[2]
            moved[checked] += [
                abs(s - w[p]) for a, w in zip(in_part, in_whole) for p, s in a.items() if p in w
            ]
    return {"parts": parts, **_moved(moved[False]), **({"verify": _moved(moved[True])} if verify else {})}


def small_collections(
    data: LabelledSet, work: Path, index_dir: Path, sizes: tuple[int, ...] = (20, 50, 200), parts: int = 3
) -> dict:
    """Random parts of the set (its make-up kept), each built twice: with an encoder of its own, as
    a user's small collection is (trained on the part, topped up with views of it), and with the
    whole set's. The ECE and precision and recall of the top-10 hits of the parts' group members."""
    whole = vecsearch.open(index_dir).encoder
    groups = dict(zip(data.paths, data.groups))
    out = {}
    for size in sizes:
        rng = np.random.default_rng(size)
        found: dict[str, list] = {"own": [], "whole": []}
        for n in range(parts):
            part = _part(data, size, rng)
            queries = [p for p in part if sum(groups[o] == groups[p] for o in part) > 1]
            for kind, encoder in (("own", None), ("whole", whole)):
                index = vecsearch.build(part, work / f"small-{size}-{n}-{kind}", encoder=encoder, quiet=True)
                sim, rel, _ = _top10(index, part, groups, queries)
                found[kind].append((sim, rel))
        out[size] = {}
        for kind, runs in found.items():
            sim, rel = np.concatenate([s for s, _ in runs]), np.concatenate([r for _, r in runs])
            out[size][kind] = {"ECE": reliability(sim, rel)[1], **precision_recall(sim, rel)}
    return {"parts": parts, "sizes": out}


def _best_hits(index, queries: list[str]) -> list[float]:
    """The percentage of each query's best hit (queries without hits left out)."""
    return [hits[0].similarity for hits in index.search_many(queries, k=1) if hits]


def tiny(
    data: LabelledSet, work: Path, strangers: list[str], index_dir: Path, indexes: int = 5, size: int = 20
) -> dict:
    """The best percentage an unrelated photo gets in ``size``-image indexes of the set, and in the
    whole set's index."""
    rng = np.random.default_rng(1)
    best = []
    for n in range(indexes):
        part = list(rng.choice(data.paths, size, replace=False))
        index = vecsearch.build(part, work / f"tiny-{n}", quiet=True)
        best += _best_hits(index, strangers)
    whole = _best_hits(vecsearch.open(index_dir), strangers)
    return {
        "indexes": indexes,
        "queries": len(best),
        "max": float(np.max(best)),
        "mean": float(np.mean(best)),
        "whole max": float(np.max(whole)),
        "whole mean": float(np.mean(whole)),
    }


def outside(
    data_root: Path, work: Path, strangers: list[str], seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
) -> dict:
    """Queries from outside the collection, as a reverse image search has them: the copy set's
    originals and distractors indexed, its edited copies as queries (each with one true match, its
    original). The ECE and precision and recall of their top-10 hits, and the best hit of unrelated
    photos in that index; the ECE and the strangers' mean again under calibrations refitted with
    other ``seeds``."""
    kind = {str(data_root / "copies" / r["path"]): r["transform"] for r in _transforms(data_root)}
    copies = load_labelled_set(data_root / "copies")
    groups = dict(zip(copies.paths, copies.groups))
    indexed = [p for p in copies.paths if kind[p] in ("original", "distractor")]
    queries = [p for p in copies.paths if kind[p] not in ("original", "distractor")]
    index = vecsearch.build(indexed, work / "outside-index", quiet=True)
    sim, rel, _ = _top10(index, indexed, groups, queries)
    best = _best_hits(index, strangers)
    eces, means = [], []
    for seed in seeds:  # the same queries under calibrations from other draws of sources and edits
        index.calibration = refit(index, seed)
        s, r, _ = _top10(index, indexed, groups, queries)
        eces.append(reliability(s, r)[1])
        means.append(float(np.mean(_best_hits(index, strangers))))
    return {
        "images": len(indexed),
        "queries": len(queries),
        "ECE": reliability(sim, rel)[1],
        **precision_recall(sim, rel),
        "strangers mean": float(np.mean(best)),
        "strangers max": float(np.max(best)),
        "ECE other seeds": eces,
        "strangers mean other seeds": means,
    }


def makeup(data_root: Path, work: Path, verify: bool = False) -> dict:
    """The copy set with the other shared photos added (those it did not take, as the issue
    defines them): the ECE and precision and recall of the copies' top-10 hits; and the same with
    the hits left out that are other shots of the query's original's scene or object (UKBench,
    Holidays), which are not copies but are sometimes nearly the same picture. With ``verify``,
    the same again with verification on."""
    paths, groups, queries, added = makeup_collection(data_root)
    index = vecsearch.build(paths, work / "makeup-index", quiet=True)
    out = _makeup_figures(data_root, index, paths, groups, queries, False)
    if verify:
        out["verify"] = _makeup_figures(data_root, index, paths, groups, queries, True)
    return {"images": len(paths), "added": added, **out}


def makeup_collection(data_root: Path) -> tuple[list[str], dict[str, object], list[str], int]:
    """The make-up collection's paths, their groups (each added photo a group of its own), its
    queries (the copy set's) and how many photos were added."""
    copies = load_labelled_set(data_root / "copies")
    others = [p for name in ("ukbench", "holidays", "wang") for p in unused(data_root, name)]
    groups = dict(zip(copies.paths, copies.groups)) | {p: f"other-{i}" for i, p in enumerate(others)}
    return copies.paths + others, groups, [copies.paths[q] for q in copies.queries], len(others)


def _makeup_figures(data_root: Path, index, paths, groups, queries, verify: bool) -> dict:
    scene = _scenes(data_root)
    sim, rel, hits = _top10(index, paths, groups, queries, verify=verify)
    original = _originals(data_root)
    shot = np.array(
        [
            p in scene and scene[p] == scene.get(original.get(q))
            for q, found in zip(queries, hits)
            for p in found
        ]
    )
    return {
        "ECE": reliability(sim, rel)[1],
        **precision_recall(sim, rel),
        "other shots": int(shot.sum()),
        "other shots ≥ 70": int((shot & (sim >= 70)).sum()),
        "without other shots": {
            "ECE": reliability(sim[~shot], rel[~shot])[1],
            **precision_recall(sim[~shot], rel[~shot]),
        },
    }


SCENES = ("ukbench", "holidays")  # shared sets whose groups are shots of one scene or object


def _transforms(data_root: Path) -> list[dict]:
    with open(data_root / "copies" / "transforms.csv", newline="") as f:
        return list(csv.DictReader(f))


def _originals(data_root: Path) -> dict[str, str]:
    """Copy-set image → the path of the shared photo its group's original was made from."""
    import json

    rows = _transforms(data_root)
    source = {
        r["group"]: str(data_root / json.loads(r["params"])["source"])
        for r in rows
        if r["transform"] == "original"
    }
    return {str(data_root / "copies" / r["path"]): source[r["group"]] for r in rows if r["group"] in source}


def _scenes(data_root: Path) -> dict[str, tuple[str, object]]:
    """Path → (set, group) of every photo of the sets whose groups are scenes or objects."""
    out = {}
    for name in SCENES:
        data = load_labelled_set(data_root / name)
        out |= {p: (name, g) for p, g in zip(data.paths, data.groups)}
    return out


def unused(data_root: Path, name: str, whole_scenes: bool = False) -> list[str]:
    """The photos of a shared set that the copy set did not take (as originals or distractors);
    with ``whole_scenes``, none of a scene or object (UKBench, Holidays group) it took a photo of."""
    import json

    taken = {
        str(data_root / json.loads(r["params"])["source"])
        for r in _transforms(data_root)
        if "source" in r["params"]
    }
    data = load_labelled_set(data_root / name)
    touched = (
        {g for p, g in zip(data.paths, data.groups) if p in taken}
        if whole_scenes and name in SCENES
        else set()
    )
    return [p for p, g in zip(data.paths, data.groups) if p not in taken and g not in touched]


def labels(name: str, data_root: Path, work: Path, index_dir: Path) -> dict:
    """``calibrate --labels`` on half of the set's groups (every other one), then the ECE of the top-10
    hits of the other half's queries, before and after."""
    data = load_labelled_set(data_root / name)
    copy = work / f"labels-{name}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(index_dir, copy)
    taught = set(np.unique(data.groups)[::2])
    file = work / f"labels-{name}.csv"
    with open(file, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "group"])
        w.writerows([p, g] for p, g in zip(data.paths, data.groups) if g in taught)
    other = LabelledSet(
        data.root,
        data.paths,
        data.groups,
        np.array([q for q in data.queries if data.groups[q] not in taught]),
    )
    before = evaluate_search(other, vecsearch.open(copy))
    after = evaluate_search(other, vecsearch.recalibrate(copy, file, quiet=True))
    _e, rel, sim = after["top10"]
    return {
        "labelled images": sum(1 for g in data.groups if g in taught),
        "queries": len(other.queries),
        "ECE before": before["ECE"],
        "ECE after": after["ECE"],
        **precision_recall(sim, rel),
    }


def strangers(data_root: Path, count: int = 20) -> list[str]:
    """Photos unrelated to the copy set's: Holidays photos of scenes it did not take."""
    return unused(data_root, "holidays", whole_scenes=True)[:count]
