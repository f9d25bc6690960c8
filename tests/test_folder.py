import numpy as np
import pytest
from PIL import Image

from lord.assets import BaseDir
from lord.data import store


def write(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "raw"
    rng = np.random.default_rng(0)
    write(root / "zebra" / "a.png", rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    write(root / "zebra" / "b.jpg", rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    write(root / "apple" / "c.bmp", rng.integers(0, 256, (50, 30, 3), dtype=np.uint8))
    write(root / "apple" / "d.webp", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    write(root / "mango" / "e.png", rng.integers(0, 256, (24, 24), dtype=np.uint8), "L")
    (root / "mango" / "notes.txt").write_text("ignored")
    return root


def test_folder_classes_from_sorted_names_and_resized(folder, tmp_path, run_cli):
    result = run_cli("-bd", tmp_path, "preprocess", "-di", "folder", "-dp", folder, "-dn", "mine", "--img-size", "16",
                     "--workers", "1")
    assert result.code == 0, result
    data = store.load(BaseDir(tmp_path).data_path("mine"))
    assert data.imgs.shape == (5, 16, 16, 3) and data.imgs.dtype == np.uint8
    assert list(data.extras["class_names"]) == ["apple", "mango", "zebra"]
    assert list(data.classes) == [0, 0, 1, 2, 2]
    assert data.n_classes == 3
    # the grayscale image is repeated to three equal channels
    gray = data.imgs[2].astype(int)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()


def test_centre_crop_before_resize(tmp_path, run_cli):
    root = tmp_path / "raw"
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, 20:40] = 255  # only the centre square is white
    write(root / "a" / "x.png", wide)
    write(root / "b" / "y.png", wide)
    assert run_cli("-bd", tmp_path, "preprocess", "-di", "folder", "-dp", root, "-dn", "c", "--img-size", "10").code == 0
    data = store.load(BaseDir(tmp_path).data_path("c"))
    assert data.imgs.min() > 250


def test_all_grayscale_gives_one_channel(tmp_path, run_cli):
    root = tmp_path / "raw"
    for name in ("a", "b"):
        write(root / name / "x.png", np.full((12, 12), 100, np.uint8), "L")
    assert run_cli("-bd", tmp_path, "preprocess", "-di", "folder", "-dp", root, "-dn", "g", "--img-size", "8").code == 0
    assert store.load(BaseDir(tmp_path).data_path("g")).imgs.shape == (2, 8, 8, 1)


def test_workers_give_identical_files(folder, tmp_path, run_cli):
    for name, workers in (("one", 1), ("two", 2)):
        assert run_cli("-bd", tmp_path, "-q", "preprocess", "-di", "folder", "-dp", folder, "-dn", name,
                       "--img-size", "16", "--workers", workers).code == 0
    paths = BaseDir(tmp_path)
    assert paths.data_path("one").read_bytes() == paths.data_path("two").read_bytes()


def test_corrupt_image_stops_or_is_skipped(folder, tmp_path, run_cli):
    (folder / "zebra" / "broken.png").write_bytes(b"\x89PNG not really")
    result = run_cli("-bd", tmp_path, "preprocess", "-di", "folder", "-dp", folder, "-dn", "x", "--img-size", "16",
                     "--channels", "3")
    assert result.code != 0 and "broken.png" in result.err and len(result.err_lines) == 1
    assert not BaseDir(tmp_path).data_path("x").exists()
    result = run_cli("-bd", tmp_path, "preprocess", "-di", "folder", "-dp", folder, "-dn", "x", "--img-size", "16",
                     "--skip-bad")
    assert result.code == 0 and "skipped 1" in result.out
    assert len(store.load(BaseDir(tmp_path).data_path("x"))) == 5


@pytest.mark.parametrize("layout, message", [
    ({}, "no class directories"),
    ({"only": ["a.png"]}, "single class"),
    ({"a": ["a.png"], "b": []}, "holds no images"),
])
def test_bad_layouts(tmp_path, run_cli, layout, message):
    root = tmp_path / "raw"
    root.mkdir()
    for name, files in layout.items():
        (root / name).mkdir()
        for file in files:
            write(root / name / file, np.zeros((8, 8, 3), np.uint8))
    result = run_cli("-bd", tmp_path, "preprocess", "-di", "folder", "-dp", root, "-dn", "x")
    assert result.code != 0 and message in result.err
    assert not (tmp_path / "cache").exists()
