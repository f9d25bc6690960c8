"""split-classes and split-samples: reproducible train/test splits of a preprocessed file.

Both keep every array of the input (per-image arrays are subset, global ones copied) and keep
`n_classes` and the class ids, so a model trained on the train side can be evaluated on the test side.
"""

import numpy as np

from lord.assets import BaseDir
from lord.data import refuse_existing, store
from lord.errors import UserError


def _outputs(base_dir, input_name, train_name, test_name, overwrite):
    base = BaseDir(base_dir)
    if len({input_name, train_name, test_name}) < 3:
        raise UserError("the input, train and test data names must all differ")
    source = base.existing_data_path(input_name)
    train_path, test_path = base.data_path(train_name), base.data_path(test_name)
    for path in (train_path, test_path):
        refuse_existing(path, "preprocessed data", overwrite)
    return store.load(source), train_path, test_path


def _write(train_path, test_path, dataset, train_indices, test_indices, quiet):
    if len(train_indices) == 0 or len(test_indices) == 0:
        side = "train" if len(train_indices) == 0 else "test"
        raise UserError(f"the split would leave the {side} set empty")
    store.save(train_path, dataset, indices=np.sort(train_indices))
    store.save(test_path, dataset, indices=np.sort(test_indices))
    if not quiet:
        print(f"wrote {train_path} ({len(train_indices)} images) and {test_path} ({len(test_indices)} images)")


def class_split_indices(classes, num_test_classes, seed):
    present = np.unique(classes)
    if num_test_classes >= len(present):
        raise UserError(
            f"cannot hold out {num_test_classes} test classes: the data has {len(present)} classes "
            "and at least one must stay for training"
        )
    rng = np.random.default_rng(seed)
    test_classes = rng.choice(present, size=num_test_classes, replace=False)
    is_test = np.isin(classes, test_classes)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def sample_split_indices(count, test_split, seed):
    if not 0.0 < test_split < 1.0:
        raise UserError(f"--test-split must lie strictly between 0 and 1, got {test_split}")
    n_test = int(round(count * test_split))
    if n_test == 0 or n_test == count:
        raise UserError(f"a test split of {test_split} of {count} images leaves one side empty")
    order = np.random.default_rng(seed).permutation(count)
    return order[n_test:], order[:n_test]


def split_classes(base_dir, input_name, train_name, test_name, num_test_classes, seed=0, overwrite=False, quiet=False):
    dataset, train_path, test_path = _outputs(base_dir, input_name, train_name, test_name, overwrite)
    if num_test_classes < 1:
        raise UserError(f"--num-test-classes must be at least 1, got {num_test_classes}")
    train_indices, test_indices = class_split_indices(dataset.classes, num_test_classes, seed)
    _write(train_path, test_path, dataset, train_indices, test_indices, quiet)
    return train_path, test_path


def split_samples(base_dir, input_name, train_name, test_name, test_split, seed=0, overwrite=False, quiet=False):
    dataset, train_path, test_path = _outputs(base_dir, input_name, train_name, test_name, overwrite)
    train_indices, test_indices = sample_split_indices(len(dataset), test_split, seed)
    _write(train_path, test_path, dataset, train_indices, test_indices, quiet)
    return train_path, test_path
