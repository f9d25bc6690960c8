import numpy as np
import pytest
import torch

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


def test_images_are_mapped_read_only_from_the_file(tmp_path, monkeypatch):
    from lord.data import mapped
    from lord.training.data import DeviceImages
    from lord.training.distributed import Distributed

    dataset = small_dataset(masks=np.ones((12, 8, 8), np.uint8))
    store.save(tmp_path / "d.npz", dataset)
    loaded = store.load(tmp_path / "d.npz")
    for array in (loaded.imgs, loaded.extras["masks"]):
        assert mapped.mapping_of(array) is not None and not array.flags.writeable
    np.testing.assert_array_equal(loaded.imgs, dataset.imgs)
    # A CPU process trains on a view of the mapping: its share is not copied.
    share = Distributed(rank=1, world_size=2).shard(loaded.imgs)
    images = DeviceImages(share, torch.device("cpu"))
    assert images.images.data_ptr() == share.ctypes.data
    np.testing.assert_array_equal(images.batch(torch.tensor([2, 0])).permute(0, 2, 3, 1).mul(255).round().byte(),
                                  dataset.imgs[[5, 1]])
    # What a GPU process does with its share: copied a chunk of rows at a time (here into host memory).
    from lord.training import data

    monkeypatch.setattr(data, "COPY_CHUNK_BYTES", 2 * 8 * 8 * 3)
    np.testing.assert_array_equal(data.copy_rows(share, torch.empty(share.shape, dtype=torch.uint8)).numpy(),
                                  dataset.imgs[1::2])


def test_a_file_with_compressed_members_is_read_with_a_note(tmp_path, capsys):
    dataset = small_dataset(masks=np.ones((12, 8, 8), np.uint8))
    np.savez_compressed(tmp_path / "old.npz", **dataset.arrays())
    loaded = store.load(tmp_path / "old.npz")
    np.testing.assert_array_equal(loaded.imgs, dataset.imgs)
    np.testing.assert_array_equal(loaded.extras["masks"], dataset.extras["masks"])
    assert "written by an older version" in capsys.readouterr().err


def imgs_header_offset(path):
    """Where the .npy magic of the imgs member starts in the file."""
    data = path.read_bytes()
    start = data.index(b"imgs.npy")
    return data.index(b"\x93NUMPY", start)


@pytest.mark.parametrize("damage", ["shape", "truncated", "local header"])
def test_a_damaged_file_is_one_clear_line(tmp_path, damage, run_cli):
    import zipfile

    from conftest import visible_lines

    path = tmp_path / "cache" / "preprocess" / "d.npz"
    path.parent.mkdir(parents=True)
    store.save(path, small_dataset())
    data = bytearray(path.read_bytes())
    if damage == "shape":
        at = data.index(b"(12, 8, 8, 3)", imgs_header_offset(path))
        data[at : at + 13] = b"(99, 8, 8, 3)"
    elif damage == "truncated":
        # imgs comes after classes and contents: drop the tail of its pixels but keep the directory.
        at = imgs_header_offset(path) + 200
        with zipfile.ZipFile(path) as archive:
            directory_start = min(info.header_offset for info in archive.infolist() if info.filename > "imgs")
        data = data[:at] + data[directory_start:]
    else:
        at = data.rindex(b"PK\x03\x04", 0, imgs_header_offset(path))
        data[at : at + 4] = b"XXXX"
    path.write_bytes(bytes(data))
    with pytest.raises(Exception) as raised:
        store.load(path)
    assert raised.type.__name__ == "UserError" and str(path) in str(raised.value)
    result = run_cli("-bd", tmp_path, "train", "-dn", "d", "-mn", "m", "-cf", "lord-tiny")
    assert result.code == 1 and len(result.err_lines) == 1 and result.err_lines[0].startswith("error: ")


READ_ONLY_LOAD = """
import mmap, os, sys
folder = sys.argv[1]
def refuse_writes(event, args):
    if event == "open" and str(args[0]).startswith(folder) and (
            any(flag in str(args[1] or "") for flag in "wax+") or (args[2] or 0) & (os.O_WRONLY | os.O_RDWR)):
        raise PermissionError(f"write access to {args[0]}")
    if event == "mmap.__new__" and args[2] != mmap.ACCESS_READ:
        raise PermissionError("a writable mapping")
sys.addaudithook(refuse_writes)
from lord.data import store
dataset = store.load(os.path.join(folder, "d.npz"))
print(int(dataset.imgs.sum()))
"""


def test_a_file_in_a_read_only_folder_loads(tmp_path):
    """The folder is made read-only, and (as root ignores that) every open for writing and every
    writable mapping of a file in it fails in the loading process."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    folder = tmp_path / "readonly"
    folder.mkdir()
    dataset = small_dataset()
    store.save(folder / "d.npz", dataset)
    (folder / "d.npz").chmod(0o444)
    folder.chmod(0o555)
    try:
        result = subprocess.run([sys.executable, "-c", READ_ONLY_LOAD, str(folder)], capture_output=True, text=True,
                                env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    finally:
        folder.chmod(0o755)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout) == int(dataset.imgs.sum())


def test_preprocess_streams_into_the_same_file_as_an_in_memory_save(tmp_path):
    from PIL import Image

    from lord.data import load_dataset, mapped, preprocess

    rng = np.random.default_rng(0)
    for name in "ab":
        (tmp_path / "raw" / name).mkdir(parents=True)
        for index in range(5):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "raw" / name / f"{index}.png")
    (tmp_path / "raw" / "b" / "bad.png").write_text("not an image")
    streamed = preprocess(tmp_path / "base", "folder", tmp_path / "raw", "f", img_size=16, skip_bad=True, workers=1,
                          quiet=True)
    in_memory = load_dataset("folder", tmp_path / "raw", img_size=16, skip_bad=True, workers=1, quiet=True)
    assert mapped.mapping_of(in_memory.imgs) is None and mapped.mapping_of(store.load(streamed).imgs) is not None
    assert len(in_memory) == 10
    store.save(tmp_path / "memory.npz", in_memory)
    assert streamed.read_bytes() == (tmp_path / "memory.npz").read_bytes()
    assert [p.name for p in streamed.parent.iterdir()] == ["f.npz"]
