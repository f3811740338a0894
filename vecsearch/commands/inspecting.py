"""The commands that describe an index and check it: info, check."""

from __future__ import annotations

from ..output import render, write_stdout
from .common import DEFAULT_INDEX, NOTHING, OK, Dir, Format, index_target


def info(index: Dir = DEFAULT_INDEX, skipped: bool = False, format: Format = "table") -> int:
    """Describe an index: size, encoder, index type and tuned recall, calibration, skipped files.

    Args:
        index: the index directory
        skipped: list the files that could not be indexed, with the reason for each
        format: table, json or csv

    Examples:
        vecsearch info --index indexes/photos
        vecsearch info --index indexes/photos --skipped --format csv > skipped.csv
    """
    import json

    from .. import pathnames
    from ..search import open_index

    idx = open_index(index)
    if skipped:
        t = idx.skipped()
        rows = [{"path": p, "reason": r} for p, r in zip(pathnames.of(t), t["reason"].to_pylist())]
        write_stdout(render(rows, format, ["path", "reason"]))
        return OK
    data = idx.info()
    if format == "json":
        write_stdout((json.dumps(data) + "\n").encode())
        return OK
    lines = _info_lines(data)
    if format == "csv":
        write_stdout(render([{"key": k, "value": v} for k, v in lines], "csv", ["key", "value"]))
        return OK
    width = max(len(k) for k, _ in lines)
    write_stdout(
        "".join(f"{key:<{width}}  {value}\n" for key, value in lines).encode("utf-8", "surrogateescape")
    )
    return OK


def _info_lines(data: dict) -> list[tuple[str, object]]:
    ix, enc, cal = data["index"], data["encoder"], data["calibration"]
    cfg = enc["config"]
    if ix["nlist"] == 1:
        faiss_line, recall = f"{ix['factory']}: exact search (every vector compared)", "1.000 (exact search)"
    else:
        rerank = f", re-ranked: {ix['rerank']}x candidates by exact distance" if ix.get("rerank") else ""
        faiss_line = f"{ix['factory']}, nprobe {ix['nprobe']}{rerank}"
        measured = ix.get("recall_at_10")
        recall = f"{measured:.3f} against exact search" if measured is not None else "not measured"
    encoder_line = (
        f"{enc['fingerprint']}: {data['dimension']} dimensions (colour {cfg['colour_pca_dim']} + "
        f"ORB-VLAD {cfg['pca_dim']}), {cfg['n_features']} ORB features, {cfg['n_centres']} visual words, "
        f"images at most {cfg['max_side']} px, colour weight {cfg['colour_weight']}"
    )
    lines = [
        ("index", data["path"]),
        ("version", data["version"]),
        ("images", data["images"]),
        ("skipped", f"{data['skipped']} (list them with --skipped)" if data["skipped"] else 0),
        ("faiss index", faiss_line),
        ("recall@10", recall),
        ("encoder", encoder_line),
        ("calibration", _calibration_line(cal, data["committed_at"])),
        ("committed", data["committed_at"]),
    ]
    if data["advice"]:
        lines.append(("advice", data["advice"]))
    return lines


def _calibration_line(cal: dict, committed: str | None) -> str:
    pairs = f"{cal.get('positives')} pairs alike and {cal.get('negatives')} not"
    if cal.get("source") == "labels":
        held = cal.get("held_out", {})
        measured = ""
        if "ECE" in held:
            at70 = held.get("precision_at_70")
            measured = f"; on the {held['pairs']} held-out pairs: ECE {held['ECE']:.3f}" + (
                f", precision at 70% {at70:.3f}" if at70 is not None else ""
            )
        return f"from labels {cal.get('labels')} ({cal.get('fitted_at')}): {pairs}{measured}"
    if cal.get("source") == "edited copies":
        lone = cal.get("lone")
        alone = (
            f"; for a query's only near hit, {lone['positives']} alike and {lone['negatives']} not"
            if lone
            else ""
        )
        return f"fitted when the index was built ({committed}) on edited copies of its images: {pairs}{alone}"
    return f"an older curve of raw distances: {pairs} (a rebuild fits the current kind)"


def check(index: Dir = DEFAULT_INDEX) -> int:
    """Verify an index: file checksums against the manifest, counts and ids across FAISS and metadata.

    Prints "ok", or one line per problem (naming the file) on stdout.

    Args:
        index: the index directory

    Exit status:
        0  the index is sound
        1  damage found (each problem on stdout)
        2  a bad argument, or no index there

    Examples:
        vecsearch check --index indexes/photos
    """
    from ..check import check as run_check
    from ..manifest import MANIFEST, IndexDirError, read_version

    root = index_target(index)
    if not (root / MANIFEST).is_file():
        read_version(root)  # says what is missing
        raise IndexDirError(f"{root}: not a vecsearch index (no {MANIFEST})")
    problems = run_check(root)
    write_stdout("".join(p + "\n" for p in problems or [f"{index}: ok"]).encode("utf-8", "surrogateescape"))
    return NOTHING if problems else OK
