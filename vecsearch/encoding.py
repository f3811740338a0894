"""A collection's images through the encoder on an executor (in-process, a pool, or Dask): training
on a sample, and encoding in batches.

Both run the per-image work (decoding, feature extraction) where the executor puts it; the
encoder's state or config reaches each worker once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from . import executors
from .encoder import Derive, Encoder, EncoderConfig, extract_files
from .stages import stage
from .vectors import EncodedFiles

TRAIN_BATCH = 32


def train_encoder(
    paths: Sequence[str], config: EncoderConfig, quiet: bool, workers: int | None = 0, scheduler=None
) -> Encoder:
    """Fit an encoder on a seeded random sample of ``config.train_images`` of the paths."""
    rng = np.random.default_rng(config.seed)
    n = min(config.train_images, len(paths))
    sample = [paths[i] for i in sorted(rng.choice(len(paths), n, replace=False))]
    with stage("train", len(sample), quiet=quiet) as st:
        if len(sample) < config.min_train_views:  # small: the topped-up path needs pixels, and is quick
            return Encoder.fit(sample, config, progress=st.update)
        feats: dict[int, list] = {}
        starts = range(0, len(sample), TRAIN_BATCH)
        tasks = ((i, sample[s : s + TRAIN_BATCH]) for i, s in enumerate(starts))
        for number, f in executors.run(
            extract_files, config, tasks, workers, scheduler, on_crash=lambda p: []
        ):
            feats[number] = f
            st.update(min(TRAIN_BATCH, len(sample) - TRAIN_BATCH * number))
        st.describe("fitting the vocabulary and the PCA")
        return Encoder.fit_features([f for k in sorted(feats) for f in feats[k]], config)


def encode_batches(
    encoder: Encoder,
    tasks: Iterable[executors.Task],
    workers: int | None = None,
    scheduler=None,
    derive: Derive | None = None,
) -> Iterator[tuple[int, EncodedFiles]]:
    """``Encoder.encode_files`` (with ``derive``) for every (number, paths) task, as they finish; a
    file that kills a worker comes back as a failure, not an error."""
    work = functools.partial(Encoder.encode_files, derive=derive)
    crashed = functools.partial(EncodedFiles.crashed, dim=encoder.dim)
    return executors.run(work, encoder, tasks, workers, scheduler, on_crash=crashed)
