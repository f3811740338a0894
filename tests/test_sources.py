"""Finding what to index: folders, globs, lists; each file once; problems reported, not raised."""

import os
from pathlib import Path

from vecsearch import sources


def test_iter_image_paths_walks_globs_lists_and_reports_missing(tmp_path, examples):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for i, p in enumerate(examples[:3]):
        (tmp_path / ("a" if i else "a/b") / Path(p).name).write_bytes(Path(p).read_bytes())
    (tmp_path / "a" / "notes.md").write_text("not an image")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{examples[3]}\n# a comment\n{examples[3]}\n")
    problems = []
    found = list(
        sources.iter_image_paths(
            [tmp_path / "a", str(tmp_path / "a" / "*.jpg"), listing, tmp_path / "missing"], problems
        )
    )
    assert len(found) == 4 and len(set(found)) == 4  # each file once, however often it is named
    assert all(os.path.isabs(p) for p in found)
    assert [p.reason for p in problems] == ["no such file or directory"]
