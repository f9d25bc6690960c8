"""What every dataset loader must do alike: determinism, parallel decoding, bad data, clear errors."""

import subprocess
import sys

import numpy as np
import pytest

import dataset_fixtures as fx

DATASET_IDS = ("mnist", "smallnorb", "cars3d", "shapes3d", "celeba", "kth", "rafd", "ffhq", "afhq", "celebahq",
               "edges2shoes")


def output_bytes(tmp_path, name):
    return (tmp_path / "base" / "cache" / "preprocess" / f"{name}.npz").read_bytes()


def make_celeba(root):
    fx.write_celeba(root, "jpg")


def make_kth(root):
    fx.write_kth_videos(root, frames=(6, 4))


def make_cars3d(root):
    pytest.importorskip("scipy.io")
    fx.write_cars3d_mat(root)


def make_smallnorb(root):
    fx.write_smallnorb_tree(root, size=24)


def make_celebahq(root):
    fx.write_celebahq(root)


@pytest.mark.parametrize("dataset_id, make", [
    ("celeba", make_celeba), ("kth", make_kth), ("cars3d", make_cars3d), ("smallnorb", make_smallnorb),
    ("celebahq", make_celebahq),
])
def test_rerun_and_worker_count_give_byte_identical_files(tmp_path, dataset_id, make):
    make(tmp_path / "raw")
    options = ("--img-size", 16)
    code, _ = fx.preprocess(tmp_path / "base", dataset_id, tmp_path / "raw", "one", *options, "--workers", 1)
    assert code == 0
    code, _ = fx.preprocess(tmp_path / "base", dataset_id, tmp_path / "raw", "two", *options, "--workers", 2)
    assert code == 0
    first = output_bytes(tmp_path, "two")
    code, _ = fx.preprocess(tmp_path / "base", dataset_id, tmp_path / "raw", "two", *options, "--overwrite")
    assert code == 0
    assert output_bytes(tmp_path, "one") == first == output_bytes(tmp_path, "two")


def test_existing_output_is_kept_without_overwrite(tmp_path, capsys):
    fx.write_afhq(tmp_path / "afhq", per_domain=1, splits=("train",))
    assert fx.preprocess(tmp_path / "base", "afhq", tmp_path / "afhq", "data", "--img-size", 8)[0] == 0
    before = output_bytes(tmp_path, "data")
    code, _ = fx.preprocess(tmp_path / "base", "afhq", tmp_path / "afhq", "data", "--img-size", 16)
    assert code == 1 and "--overwrite" in capsys.readouterr().err
    assert output_bytes(tmp_path, "data") == before


def test_corrupt_image_stops_the_run_or_is_skipped(tmp_path, capsys):
    fx.write_afhq(tmp_path / "afhq", per_domain=2, splits=("train",))
    bad = tmp_path / "afhq" / "train" / "dog" / "flickr_dog_000001.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    code, out = fx.preprocess(tmp_path / "base", "afhq", tmp_path / "afhq", "data", "--img-size", 8)
    assert code == 1 and not out.exists()
    error = capsys.readouterr().err
    assert "flickr_dog_000001.jpg" in error and "--skip-bad" in error
    code, out = fx.preprocess(tmp_path / "base", "afhq", tmp_path / "afhq", "data", "--img-size", 8, "--skip-bad",
                              quiet=False)
    assert code == 0
    assert "skipped 1 unreadable file(s)" in capsys.readouterr().out
    data = fx.load_output(out)
    np.testing.assert_array_equal(data.classes, [0, 0, 1, 2, 2])


def test_corrupt_video_is_skipped_with_its_frames(tmp_path, capsys):
    fx.write_kth_videos(tmp_path / "kth", frames=(5, 3))
    (tmp_path / "kth" / "handwaving" / "person03_handwaving_d4_uncomp.avi").write_bytes(b"RIFF broken")
    code, out = fx.preprocess(tmp_path / "base", "kth", tmp_path / "kth", "data", "--img-size", 8)
    assert code == 1 and not out.exists()
    assert "person03_handwaving_d4_uncomp.avi" in capsys.readouterr().err
    code, out = fx.preprocess(tmp_path / "base", "kth", tmp_path / "kth", "data", "--img-size", 8, "--skip-bad")
    assert code == 0
    data = fx.load_output(out)
    np.testing.assert_array_equal(data.classes, [0] * 5 + [1] * 3)


def test_corrupt_mat_file_is_skipped_with_its_views(tmp_path):
    pytest.importorskip("scipy.io")
    fx.write_cars3d_mat(tmp_path / "cars")
    (tmp_path / "cars" / "car_002_mesh.mat").write_bytes(b"MATLAB 5.0 broken")
    code, out = fx.preprocess(tmp_path / "base", "cars3d", tmp_path / "cars", "data", "--img-size", 8, "--skip-bad")
    assert code == 0
    data = fx.load_output(out)
    assert list(data.extras["class_names"]) == ["car_001_mesh", "car_010_mesh"]
    np.testing.assert_array_equal(flat_red(data.imgs), 40 * np.repeat([0, 2], 96) + 10)


def flat_red(imgs):
    return imgs[..., 0].reshape(len(imgs), -1).mean(axis=1)


def test_corrupt_features_file_is_named_or_skipped(tmp_path, capsys):
    fx.write_ffhq(tmp_path / "ffhq")
    (tmp_path / "ffhq" / "features" / "00001.json").write_text("[{\"faceAttributes\": ")
    code, out = fx.preprocess(tmp_path / "base", "ffhq", tmp_path / "ffhq", "data", "--img-size", 8)
    assert code == 1 and not out.exists()
    assert "00001.json" in capsys.readouterr().err
    code, out = fx.preprocess(tmp_path / "base", "ffhq", tmp_path / "ffhq", "data", "--img-size", 8, "--skip-bad")
    assert code == 0
    np.testing.assert_array_equal(fx.load_output(out).classes, [0, 3, 7, 4])


EXPECTED_FILES = {
    "mnist": "train-images-idx3-ubyte",
    "smallnorb": "smallnorb-5x46789x9x18x6x2x96x96-training-{dat,cat,info}.mat",
    "cars3d": "ROOT/cars3d.npz",
    "shapes3d": "ROOT/3dshapes.h5",
    "celeba": "ROOT/Anno/identity_CelebA.txt",
    "kth": "personNN_handwaving_d4_uncomp.avi",
    "rafd": "ROOT/Rafd<angle>_<person>",
    "ffhq": "ROOT/features/NNNNN.json",
    "afhq": "ROOT/train/<domain>/*.jpg",
    "celebahq": "CelebAMask-HQ-attribute-anno.txt",
    "edges2shoes": "ROOT/train/<n>_AB.jpg",
}


@pytest.mark.parametrize("dataset_id", DATASET_IDS)
def test_root_matching_no_layout_names_the_expected_files(tmp_path, capsys, dataset_id):
    root = tmp_path / "raw"
    root.mkdir()
    (root / "readme.txt").write_text("downloaded the wrong thing\n")
    code, out = fx.preprocess(tmp_path / "base", dataset_id, root)
    assert code == 1 and not out.exists()
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ")
    assert f"matches no {dataset_id} layout" in error and EXPECTED_FILES[dataset_id] in error


@pytest.mark.parametrize("dataset_id", DATASET_IDS)
def test_missing_root_is_one_error_line(tmp_path, capsys, dataset_id):
    code, out = fx.preprocess(tmp_path / "base", dataset_id, tmp_path / "nowhere")
    assert code == 1 and not out.exists()
    assert capsys.readouterr().err == f"error: dataset path {tmp_path / 'nowhere'} does not exist\n"


def test_option_of_another_dataset_is_refused(tmp_path, capsys):
    fx.write_mnist_npz(tmp_path / "mnist")
    code, _ = fx.preprocess(tmp_path / "base", "mnist", tmp_path / "mnist", "data", "--part", "hair")
    assert code == 1
    assert "--part does not apply to dataset 'mnist'" in capsys.readouterr().err


def write_shapes3d(root):
    pytest.importorskip("h5py")
    fx.write_shapes3d(root)


def write_cars3d_mat(root):
    pytest.importorskip("scipy.io")
    fx.write_cars3d_mat(root)


def write_rafd_names(root):
    root.mkdir(parents=True)
    for expression in ("angry", "happy"):
        fx.save_image(root / f"Rafd090_01_Caucasian_female_{expression}_frontal.jpg", fx.flat(32, 32, 100))


@pytest.mark.parametrize("dataset_id, module, extra, write", [
    ("shapes3d", "h5py", "shapes3d", write_shapes3d),
    ("cars3d", "scipy", "cars3d", write_cars3d_mat),
    ("rafd", "dlib", "faces", write_rafd_names),
])
def test_missing_optional_package_names_the_extra(tmp_path, capsys, monkeypatch, dataset_id, module, extra, write):
    write(tmp_path / "raw")
    monkeypatch.setitem(sys.modules, module, None)
    code, out = fx.preprocess(tmp_path / "base", dataset_id, tmp_path / "raw")
    assert code == 1 and not out.exists()
    error = capsys.readouterr().err
    assert f"pip install -e .[{extra}]" in error and module in error


def test_importing_the_toolkit_needs_no_optional_package():
    modules = ", ".join(f"lord.data.{name}" for name in DATASET_IDS)
    code = (
        f"import sys, lord, lord.data, lord.data.registry, {modules}\n"
        "print(sorted(m for m in ('h5py', 'scipy', 'dlib') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=fx.REPOSITORY, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
