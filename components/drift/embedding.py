"""The embedding check: are the new examples, as the serving model sees them (the features its
head reads), from the same distribution as examples like those it was trained on? A kernel
two-sample test (MMD, Gaussian kernel at the median distance) with a permutation p-value: it sees
changes that per-feature statistics miss (inverted or blurred images, another topic of text)."""

from __future__ import annotations

import numpy as np

from components.contract import EMBEDDING_OUTPUT, EMBEDDING_SIGNATURE, EXAMPLES_INPUT

PERMUTATIONS = 500
BATCH = 64


def load_model(version_dir: str):
    """The serving SavedModel. A text model's graph holds tensorflow-text's ops, which must be
    registered first: a Kubeflow task (the RetrainGate alone in its process) has not loaded them."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    return tf.saved_model.load(version_dir)


def embeddings(model, records: list[bytes]) -> np.ndarray:
    """The serving model's features of serialized tf.Examples (its embedding signature)."""
    import tensorflow as tf

    embed = model.signatures[EMBEDDING_SIGNATURE]
    parts = [
        embed(**{EXAMPLES_INPUT: tf.constant(records[i : i + BATCH])})[EMBEDDING_OUTPUT].numpy()
        for i in range(0, len(records), BATCH)
    ]
    return np.concatenate(parts).astype(np.float64)


def mmd_test(x: np.ndarray, y: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0) -> tuple[float, float]:
    """(squared MMD, permutation p-value) of samples x and y (rows). The kernel's bandwidth is the
    median squared distance between all points; the p-value counts the relabellings of the pooled
    points whose MMD is at least the observed one (seeded: the same data gives the same answer)."""
    z = np.concatenate([x, y])
    squared = np.sum(z * z, axis=1)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2.0 * z @ z.T, 0.0)
    bandwidth = float(np.median(distances[np.triu_indices(len(z), 1)])) or 1.0
    kernel = np.exp(-distances / bandwidth)
    n = len(x)

    def mmd(order: np.ndarray) -> float:
        a, b = order[:n], order[n:]
        return kernel[np.ix_(a, a)].mean() + kernel[np.ix_(b, b)].mean() - 2.0 * kernel[np.ix_(a, b)].mean()

    observed = mmd(np.arange(len(z)))
    rng = np.random.default_rng(seed)
    at_least = sum(mmd(rng.permutation(len(z))) >= observed for _ in range(permutations))
    return float(observed), (at_least + 1) / (permutations + 1)


def embedding_check(model, old_records: list[bytes], new_records: list[bytes], p_value: float) -> dict:
    value, p = mmd_test(embeddings(model, old_records), embeddings(model, new_records))
    return {
        "check": "embedding",
        "feature": "serving model features",
        "statistic": f"MMD permutation p-value (MMD^2 {value:.4g}; {len(old_records)} vs {len(new_records)} examples)",
        "value": round(p, 4),
        "threshold": p_value,
        "drifted": bool(p < p_value),
    }
