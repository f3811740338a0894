"""add / remove: only new or changed files are encoded, each change is one new version."""
import os
import shutil
import time

import numpy as np
import pytest

import vecsearch


@pytest.fixture
def grown(tmp_path, examples, encoder):
    src = tmp_path / "src"
    src.mkdir()
    for p in examples[:5]:
        shutil.copy(p, src)
    index = vecsearch.build([src], tmp_path / "idx", encoder=encoder, workers=0, quiet=True)
    return src, index


def test_add_encodes_only_new_and_changed(grown, examples):
    src, index = grown
    for p in examples[5:8]:
        shutil.copy(p, src)
    added = vecsearch.add([src], index.path, workers=0, quiet=True)
    assert added.last_build.indexed == 3 and len(added) == 8 and added.version.number == 2
    assert vecsearch.add([src], index.path, workers=0, quiet=True).last_build.indexed == 0
    target = src / os.path.basename(examples[0])
    shutil.copy(examples[9], target)  # same name, new content
    os.utime(target, (time.time() + 10, time.time() + 10))
    changed = vecsearch.add([src], index.path, workers=0, quiet=True)
    assert changed.last_build.indexed == 1 and len(changed) == 8
    hits = changed.search(examples[9], k=1)
    assert hits[0].path == str(target) and hits[0].similarity > 99
    ids = changed.metadata()["id"].to_pylist()
    assert len(set(ids)) == 8 and changed.faiss.ntotal == 8


def test_remove_by_path_folder_and_missing(grown, examples):
    src, index = grown
    assert vecsearch.remove([src / os.path.basename(examples[1])], index.path) == 1
    os.remove(src / os.path.basename(examples[2]))
    assert vecsearch.remove(None, index.path, missing=True) == 1
    after = vecsearch.open(index.path)
    assert len(after) == 3 and after.faiss.ntotal == len(after.metadata())
    assert all(os.path.basename(examples[i]) not in after.metadata()["path"].to_pylist() for i in (1, 2))
    assert vecsearch.remove([src], index.path) == 3 and len(vecsearch.open(index.path)) == 0


def test_info_advises_retraining_when_the_collection_outgrew_the_encoder():
    from vecsearch.search import retrain_advice

    assert retrain_advice({"index": {"nlist": 1}, "encoder_trained_on": 100}, 50) is None
    assert "retrain" in retrain_advice({"index": {"nlist": 1}, "encoder_trained_on": 100}, 500)
    assert "IVF" in retrain_advice({"index": {"nlist": 1}}, 30_000)
    assert "since the IVF" in retrain_advice({"index": {"nlist": 256, "trained_on": 30_000}}, 200_000)
