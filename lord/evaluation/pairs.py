"""Which images an evaluation translates: seeded pairs (A, B) of images of different classes.

A translation takes the content of A and the class of B. For content transfer the pair also needs
its ground truth, the image with B's class and A's content id; `GroundTruth.target` finds it (the
first such image in the data, so the choice is deterministic). Pairs are drawn uniformly among the
valid ones without repetition, in candidate batches (no per-pair Python), and fixed by the seed.
"""

import numpy as np

CANDIDATES_PER_ROUND = 16384
MAX_ROUNDS = 64


class GroundTruth:
    """Looks up the image with a given (class, content id) in a data set that has content ids."""

    def __init__(self, classes, contents):
        classes, contents = np.asarray(classes, dtype=np.int64), np.asarray(contents, dtype=np.int64)
        self.n_contents = int(contents.max()) + 1
        keys = classes * self.n_contents + contents
        self.keys, self.first_index = np.unique(keys, return_index=True)

    def target(self, classes, contents):
        """Index of the first image with each (class, content id), -1 where the data has none."""
        keys = np.asarray(classes, dtype=np.int64) * self.n_contents + np.asarray(contents, dtype=np.int64)
        position = np.searchsorted(self.keys, keys).clip(max=len(self.keys) - 1)
        return np.where(self.keys[position] == keys, self.first_index[position], -1)


def sample_pairs(classes, n_pairs, seed, contents=None):
    """Up to `n_pairs` distinct (A, B) index pairs with classes[A] != classes[B], as two int64 arrays.

    With `contents`, also a third array: the ground-truth image (B's class, A's content), and only
    pairs whose ground truth exists and is not B itself are drawn. Fewer pairs come back only when
    the valid ones are that rare or that few.
    """
    classes = np.asarray(classes, dtype=np.int64)
    n_images = len(classes)
    truth = None if contents is None else GroundTruth(classes, contents)
    rng = np.random.default_rng(seed)
    chosen_keys = np.empty(0, dtype=np.int64)
    for _ in range(MAX_ROUNDS):
        first = rng.integers(0, n_images, CANDIDATES_PER_ROUND)
        second = rng.integers(0, n_images, CANDIDATES_PER_ROUND)
        valid = classes[first] != classes[second]
        if truth is not None:
            targets = truth.target(classes[second], np.asarray(contents)[first])
            valid &= (targets >= 0) & (targets != second)
        keys = np.concatenate([chosen_keys, first[valid] * n_images + second[valid]])
        _, first_seen = np.unique(keys, return_index=True)
        chosen_keys = keys[np.sort(first_seen)][:n_pairs]
        if len(chosen_keys) == n_pairs:
            break
    first, second = chosen_keys // n_images, chosen_keys % n_images
    if truth is None:
        return first, second
    return first, second, truth.target(classes[second], np.asarray(contents)[first])


def random_of_same_class(classes, indices, seed):
    """For each index, a random image of its class, never the image itself where the class has another."""
    classes = np.asarray(classes, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    order = np.argsort(classes, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    starts = np.searchsorted(classes[order], classes[indices], side="left")
    counts = np.searchsorted(classes[order], classes[indices], side="right") - starts
    others = np.maximum(counts - 1, 1)
    offsets = np.floor(np.random.default_rng(seed).random(len(indices)) * others).astype(np.int64)
    offsets += (offsets >= rank[indices] - starts) & (counts > 1)
    return order[starts + offsets]
