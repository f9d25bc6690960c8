import numpy as np
import pytest

from lord.assets import BaseDir
from lord.data import store


@pytest.fixture
def base(tmp_path):
    rng = np.random.default_rng(0)
    n = 60
    dataset = store.make_dataset(
        rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8), np.arange(n) % 6, contents=np.arange(n) // 6,
        n_classes=7, masks=rng.integers(0, 2, (n, 8, 8), dtype=np.uint8), identity=np.arange(n) % 5,
        class_names=np.asarray(list("abcdefg")),
    )
    store.save(BaseDir(tmp_path).data_path("all"), dataset)
    return tmp_path


def load(base, name):
    return store.load(BaseDir(base).data_path(name))


def rows(dataset):
    return {bytes(img.tobytes()) + bytes([c]) for img, c in zip(dataset.imgs, dataset.classes)}


def test_split_classes_holds_out_whole_classes(base, run_cli):
    result = run_cli("-bd", base, "--seed", "3", "split-classes", "-idn", "all", "-trdn", "tr", "-tsdn", "ts", "-ntsi", "2")
    assert result.code == 0, result
    full, train, test = load(base, "all"), load(base, "tr"), load(base, "ts")
    assert len(set(np.unique(test.classes))) == 2
    assert not set(train.classes) & set(test.classes)
    assert len(train) + len(test) == len(full)
    assert rows(train) | rows(test) == rows(full) and not rows(train) & rows(test)
    assert train.n_classes == test.n_classes == 7
    for part in (train, test):
        assert set(part.extras) == set(full.extras)
        assert list(part.extras["class_names"]) == list("abcdefg")
        assert part.extras["masks"].shape == (len(part), 8, 8)


def test_split_samples_is_disjoint_complete_and_keeps_ids(base, run_cli):
    result = run_cli("-bd", base, "split-samples", "--input-data-name", "all", "--train-data-name", "tr",
                     "--test-data-name", "ts", "--test-split", "0.25")
    assert result.code == 0, result
    full, train, test = load(base, "all"), load(base, "tr"), load(base, "ts")
    assert len(test) == 15 and len(train) == 45
    assert rows(train) | rows(test) == rows(full) and not rows(train) & rows(test)
    # class ids and labels travel with their images
    lookup = {img.tobytes(): (c, k, i) for img, c, k, i in
              zip(full.imgs, full.classes, full.contents, full.extras["identity"])}
    for part in (train, test):
        for img, c, k, i in zip(part.imgs, part.classes, part.contents, part.extras["identity"]):
            assert lookup[img.tobytes()] == (c, k, i)


def test_splits_are_reproducible_with_the_seed(base, run_cli):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert run_cli("-bd", base, "--seed", seed, "split-samples", "-idn", "all", "-trdn", f"{name}tr",
                       "-tsdn", f"{name}ts", "-ts", "0.3").code == 0
    paths = BaseDir(base)
    assert paths.data_path("ats").read_bytes() == paths.data_path("bts").read_bytes()
    assert paths.data_path("ats").read_bytes() != paths.data_path("cts").read_bytes()


@pytest.mark.parametrize("args, message", [
    (["split-classes", "-idn", "all", "-trdn", "tr", "-tsdn", "ts", "-ntsi", "6"], "at least one must stay"),
    (["split-classes", "-idn", "all", "-trdn", "tr", "-tsdn", "ts", "-ntsi", "0"], "positive integer"),
    (["split-samples", "-idn", "all", "-trdn", "tr", "-tsdn", "ts", "-ts", "0"], "strictly between 0 and 1"),
    (["split-samples", "-idn", "all", "-trdn", "tr", "-tsdn", "ts", "-ts", "1"], "strictly between 0 and 1"),
    (["split-samples", "-idn", "all", "-trdn", "tr", "-tsdn", "ts", "-ts", "0.001"], "one side empty"),
    (["split-samples", "-idn", "nope", "-trdn", "tr", "-tsdn", "ts", "-ts", "0.5"], "no preprocessed data"),
    (["split-samples", "-idn", "all", "-trdn", "all", "-tsdn", "ts", "-ts", "0.5"], "must all differ"),
    (["split-samples", "-idn", "all", "-trdn", "../x", "-tsdn", "ts", "-ts", "0.5"], "invalid data name"),
])
def test_impossible_splits_are_refused_and_write_nothing(base, run_cli, args, message):
    before = sorted(p.name for p in BaseDir(base).preprocess_dir.iterdir())
    result = run_cli("-bd", base, *args)
    assert result.code != 0
    assert message in result.err and len(result.err_lines) == 1
    assert sorted(p.name for p in BaseDir(base).preprocess_dir.iterdir()) == before


def test_existing_outputs_need_overwrite(base, run_cli):
    args = ["-bd", base, "split-samples", "-idn", "all", "-trdn", "tr", "-tsdn", "ts", "-ts", "0.5"]
    assert run_cli(*args).code == 0
    again = run_cli(*args)
    assert again.code != 0 and "--overwrite" in again.err
    assert run_cli(*args, "--overwrite").code == 0
