import numpy as np
import pytest

from lord.data import store
from lord.errors import UserError


def small_dataset(n=12, size=8, channels=3, **extras):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)
    return store.make_dataset(imgs, np.arange(n) % 3, contents=np.arange(n) // 3, n_classes=3, **extras)


def test_round_trip_keeps_every_array(tmp_path):
    dataset = small_dataset(masks=np.ones((12, 8, 8), np.uint8), age=np.arange(12) % 4,
                            class_names=np.asarray(["a", "b", "c"]))
    path = tmp_path / "d.npz"
    store.save(path, dataset)
    loaded = store.load(path)
    assert loaded.imgs.dtype == np.uint8 and loaded.imgs.shape == (12, 8, 8, 3)
    np.testing.assert_array_equal(loaded.imgs, dataset.imgs)
    np.testing.assert_array_equal(loaded.classes, dataset.classes)
    np.testing.assert_array_equal(loaded.contents, dataset.contents)
    assert loaded.n_classes == 3
    assert list(loaded.extras["class_names"]) == ["a", "b", "c"]
    assert int(loaded.extras["n_age"]) == 4
    assert loaded.label("age")[1] == 4


def test_file_is_plain_npz_readable_by_numpy(tmp_path):
    path = tmp_path / "d.npz"
    store.save(path, small_dataset())
    with np.load(path, allow_pickle=False) as archive:
        assert set(archive.files) == {"imgs", "classes", "contents", "n_classes"}
        assert archive["n_classes"].shape == ()


def test_same_data_gives_identical_bytes(tmp_path):
    store.save(tmp_path / "a.npz", small_dataset())
    store.save(tmp_path / "b.npz", small_dataset())
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_subset_keeps_global_arrays(tmp_path):
    dataset = small_dataset(class_names=np.asarray(["a", "b", "c"]), identity=np.arange(12))
    part = dataset.subset([0, 5, 7])
    assert part.n_classes == 3 and list(part.extras["class_names"]) == ["a", "b", "c"]
    np.testing.assert_array_equal(part.extras["identity"], [0, 5, 7])


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"imgs": np.zeros((2, 4, 4, 3), np.float32)}, "uint8"),
        ({"classes": np.array([0, 1, 2])}, "classes has shape"),
        ({"classes": np.array([0, 7])}, "classes must lie"),
        ({"imgs": np.zeros((0, 4, 4, 3), np.uint8), "classes": np.zeros(0, np.int64),
          "contents": np.zeros(0, np.int64)}, "empty"),
        ({"imgs": np.zeros((2, 4, 4, 2), np.uint8)}, "shape (N, H, W, 1 or 3)"),
        ({"classes": np.array([0.0, 1.0])}, "integers"),
        ({"masks": np.zeros((2, 3, 3), np.uint8)}, "masks"),
    ],
)
def test_invalid_files_name_the_problem(tmp_path, arrays, message):
    base = {"imgs": np.zeros((2, 4, 4, 3), np.uint8), "classes": np.array([0, 1]),
            "contents": np.array([0, 0]), "n_classes": np.array(2)}
    base.update(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **base)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        store.load(path)


def test_missing_arrays_and_non_npz(tmp_path):
    np.savez(tmp_path / "partial.npz", imgs=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(UserError, match="lacks the array"):
        store.load(tmp_path / "partial.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="cannot read"):
        store.load(tmp_path / "junk.npz")


def test_pickled_object_arrays_are_refused(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, imgs=np.zeros((2, 4, 4, 3), np.uint8), classes=np.array([0, 1]), contents=np.array([0, 0]),
             n_classes=np.array(2), names=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(UserError):
        store.load(path)
