"""How far a listing's images are from everything MUIsC was trained on (the uncertain band).

A rejection by stage 2 is a learned guess; on images unlike any it was trained on (another
store's photography, a new category) the guess is worth little. Each image is summarised by its
mean-pooled backbone map (the tokens MUIsC reads), projected to a few principal components of
the training images and compared by cosine with a sample of them; an image's novelty is one
minus the mean similarity of its k nearest training images, a sequence's the mean over its
images. The threshold is a high percentile of the same measure on held-out validation images,
so about that share of listings like the training data's falls above it by chance.

Stored beside the weights as `novelty.npz` (float16, ~1 MB); built by `agpis calibrate muisc`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FILE = "novelty.npz"


def pooled(tokens: np.ndarray) -> np.ndarray:
    """(..., 49, C) backbone tokens -> (..., C) mean-pooled."""
    return np.asarray(tokens, np.float32).mean(axis=-2)


@dataclass
class NoveltyIndex:
    mean: np.ndarray  # (C,) centre of the training images
    proj: np.ndarray  # (C, d) principal directions
    refs: np.ndarray  # (N, d) unit-norm projected training images
    threshold: float  # sequence novelty above this: uncertain
    k: int = 5

    def _embed(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float32) - self.mean) @ self.proj
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-6)

    def image_novelty(self, x: np.ndarray) -> np.ndarray:
        """(n, C) pooled images -> (n,) novelty in [0, 2]."""
        sims = self._embed(x) @ self.refs.T.astype(np.float32)  # (n, N)
        k = min(self.k, sims.shape[1])
        top = np.partition(sims, -k, axis=1)[:, -k:]
        return 1.0 - top.mean(axis=1)

    def sequence_novelty(self, x: np.ndarray) -> float:
        return float(self.image_novelty(x).mean())

    @classmethod
    def fit(cls, train: np.ndarray, val_sequences: list[np.ndarray], dims: int = 64, n_refs: int = 6000,
            percentile: float = 97.5, seed: int = 0) -> "NoveltyIndex":
        """train: (N, C) pooled training images; val_sequences: (K, C) pooled images per held-out
        sequence, whose novelty sets the threshold."""
        rng = np.random.default_rng(seed)
        train = np.asarray(train, np.float32)
        mean = train.mean(0)
        sample = train[rng.choice(len(train), min(len(train), 20000), replace=False)] - mean
        _, _, vt = np.linalg.svd(sample, full_matrices=False)
        proj = vt[:dims].T.astype(np.float32)
        idx = rng.choice(len(train), min(len(train), n_refs), replace=False)
        index = cls(mean, proj, np.zeros((0, dims), np.float32), 0.0)
        index.refs = index._embed(train[idx])
        scores = np.array([index.sequence_novelty(s) for s in val_sequences])
        index.threshold = float(np.percentile(scores, percentile)) if len(scores) else 1.0
        return index

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / FILE
        np.savez_compressed(path, mean=self.mean.astype(np.float16), proj=self.proj.astype(np.float16),
                            refs=self.refs.astype(np.float16), threshold=np.float32(self.threshold),
                            k=np.int32(self.k))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "NoveltyIndex | None":
        path = Path(directory) / FILE
        if not path.is_file():
            return None
        with np.load(path) as z:
            return cls(z["mean"].astype(np.float32), z["proj"].astype(np.float32), z["refs"].astype(np.float32),
                       float(z["threshold"]), int(z["k"]))
