"""`lord.py manipulate` with LORD and OverLORD models: strips, references, labels, directories, errors."""

import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import CLI, set_args
from lord.assets import BaseDir
from lord.data import store
from lord.inference import fit_image, load_model
from lord.model import reference_code, translation_code

def strip_width(cells, size):
    """Strips are the input and its translations side by side, as the published manipulate writes them."""
    return cells * size


def cell(strip, index, size):
    return strip[:, index * size : (index + 1) * size]


def read_png(path):
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def images(tmp_path_factory, synthetic32_base):
    """Input files: dataset images as PNG, an odd-size RGBA one, a grayscale JPEG."""
    folder = tmp_path_factory.mktemp("inputs")
    dataset = store.load(BaseDir(synthetic32_base).data_path("syn32"))
    first = int(np.flatnonzero(dataset.classes == 0)[0])
    other = int(np.flatnonzero(dataset.classes == 1)[0])
    Image.fromarray(dataset.imgs[first]).save(folder / "object.png")
    Image.fromarray(dataset.imgs[other]).save(folder / "reference.png")
    rgba = np.dstack([np.kron(dataset.imgs[other], np.ones((2, 3, 1), dtype=np.uint8)),
                      np.full((64, 96), 255, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(folder / "wide.png")
    Image.fromarray(dataset.imgs[first].mean(axis=-1).astype(np.uint8)[:30, :27]).save(folder / "gray.jpg")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def lord_base(tmp_path_factory, synthetic_base):
    """A LORD model trained through both stages on the 16 px set, and one with stage 1 only."""
    base = tmp_path_factory.mktemp("lord-models")
    shutil.copytree(synthetic_base, base, dirs_exist_ok=True)
    common = ["-bd", str(base), "-q", "--device", "cpu"]
    for name in ("lord", "latent-only"):
        assert CLI.main([*common, "train", "-dn", "syn", "-mn", name, "-cf", "lord-tiny",
                         *set_args("train.n_epochs=1")]) == 0
    assert CLI.main([*common, "train-encoders", "-dn", "syn", "-mn", "lord", "--set", "train_encoders.n_epochs=1"]) == 0
    return base


def test_strip_of_every_label(overlord_models, images, tmp_path, run_cli):
    out = tmp_path / "strip.png"
    result = run_cli("-bd", overlord_models, "manipulate", "-mn", "none", "-i", images / "object.png", "-o", out)
    assert result.code == 0, result
    strip = read_png(out)
    assert strip.shape == (32, strip_width(3, 32), 3)
    np.testing.assert_array_equal(cell(strip, 0, 32), read_png(images / "object.png"))
    assert not np.array_equal(cell(strip, 1, 32), cell(strip, 2, 32))


def test_single_label_matches_the_strip(overlord_models, images, tmp_path, run_cli):
    for args, name in (([], "all.png"), (["--label", "1"], "one.png")):
        assert run_cli("-bd", overlord_models, "-q", "manipulate", "-mn", "pose-invariant", "-i", images / "object.png",
                       "-o", tmp_path / name, *args).code == 0
    full, one = read_png(tmp_path / "all.png"), read_png(tmp_path / "one.png")
    assert one.shape == (32, strip_width(2, 32), 3)
    assert_within_one_grey_level(cell(one, 1, 32), cell(full, 2, 32))


def assert_within_one_grey_level(translated, expected):
    """A translation generated alone and in a batch of several: float32 convolutions round differently
    for another batch size (up to 6e-6 in the generator's output), which can move a pixel by one grey
    level, and no more."""
    difference = np.abs(translated.astype(np.int16) - expected.astype(np.int16))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01


def test_reference_gives_label_and_correlated_code(overlord_models, images, tmp_path, run_cli):
    out = tmp_path / "translated.png"
    result = run_cli("-bd", overlord_models, "-q", "manipulate", "-mn", "localized", "-i", images / "object.png",
                     "-r", images / "reference.png", "-o", out)
    assert result.code == 0 and result.err == "", result
    translated = read_png(out)
    assert translated.shape == (32, 32, 3)
    model = load_model(overlord_models, "localized", device="cpu")
    content, reference = read_png(images / "object.png"), read_png(images / "reference.png")
    np.testing.assert_array_equal(translated, model.translate_images([content], [reference])[0, 0])
    # the reference's correlated code matters: with the input's own, the translation differs
    label, _, _ = model.encode([reference])
    _, own_correlated, uncorrelated = model.encode([content])
    own = model.generate(translation_code(uncorrelated, reference_code(label, own_correlated)))
    assert not np.array_equal(translated, model.cells(own[None])[0, 0])


def test_any_size_and_mode_is_fitted(overlord_models, images, tmp_path, run_cli):
    for name in ("wide.png", "gray.jpg"):
        out = tmp_path / f"{name}.png"
        assert run_cli("-bd", overlord_models, "-q", "manipulate", "-mn", "none", "-i", images / name, "-o", out,
                       "--label", "0").code == 0
        strip = read_png(out)
        assert strip.shape == (32, strip_width(2, 32), 3)
    wide = np.asarray(Image.open(images / "wide.png").convert("RGB"))
    np.testing.assert_array_equal(cell(read_png(tmp_path / "wide.png.png"), 0, 32), fit_image(wide, (32, 32, 3)))


def test_directory_mode(overlord_models, images, tmp_path, run_cli):
    out = tmp_path / "outputs"
    result = run_cli("-bd", overlord_models, "manipulate", "-mn", "pose-invariant", "-i", images, "-o", out,
                     "-r", images / "reference.png")
    assert result.code == 0, result
    assert sorted(path.name for path in out.iterdir()) == ["gray.png", "object.png", "reference.png", "wide.png"]
    assert all(read_png(path).shape == (32, 32, 3) for path in out.iterdir())
    assert "manipulate" in result.err and "4/4" in result.err
    single = tmp_path / "single.png"
    assert run_cli("-bd", overlord_models, "-q", "manipulate", "-mn", "pose-invariant", "-i", images / "object.png",
                   "-r", images / "reference.png", "-o", single).code == 0
    np.testing.assert_array_equal(read_png(out / "object.png"), read_png(single))


def test_directory_mode_strips(overlord_models, images, tmp_path, run_cli):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(images / "reference.png", inputs / "a.png")
    result = run_cli("-bd", overlord_models, "-q", "manipulate", "-mn", "localized", "-i", inputs, "-o",
                     tmp_path / "out")
    assert result.code == 0 and result.err == "", result
    assert read_png(tmp_path / "out" / "a.png").shape == (32, strip_width(3, 32), 3)


def test_lord_models(lord_base, images, tmp_path, run_cli):
    strip_path, translated_path = tmp_path / "strip.png", tmp_path / "translated.png"
    assert run_cli("-bd", lord_base, "-q", "manipulate", "-mn", "lord", "-i", images / "wide.png", "-o",
                   strip_path).code == 0
    assert read_png(strip_path).shape == (16, strip_width(4, 16), 3)
    assert run_cli("-bd", lord_base, "-q", "manipulate", "-mn", "lord", "-i", images / "gray.jpg", "-r",
                   images / "reference.png", "-o", translated_path).code == 0
    assert read_png(translated_path).shape == (16, 16, 3)


@pytest.mark.parametrize("args, message", [
    (["-mn", "nothing", "-i", "object.png"], "no model named 'nothing'"),
    (["-mn", "latent-only", "-i", "object.png"], "no trained encoders"),
    (["-mn", "lord", "-i", "notes.txt"], "cannot read image"),
    (["-mn", "lord", "-i", "missing.png"], "no image file or directory"),
    (["-mn", "lord", "-i", "object.png", "--label", "3"], "out of range"),
    (["-mn", "lord", "-i", "object.png", "--label", "1", "-r", "reference.png"], "not both"),
    (["-mn", "lord", "-i", "object.png", "-r", "notes.txt"], "cannot read image"),
])
def test_errors_are_one_line(lord_base, images, tmp_path, run_cli, args, message):
    args = [str(images / arg) if arg.endswith((".png", ".txt")) else arg for arg in args]
    result = run_cli("-bd", lord_base, "manipulate", *args, "-o", tmp_path / "out.png")
    assert result.code != 0 and len(result.err_lines) == 1 and message in result.err, result
    assert "Traceback" not in result.err and not (tmp_path / "out.png").exists()


def test_output_must_be_png(lord_base, images, tmp_path, run_cli):
    result = run_cli("-bd", lord_base, "manipulate", "-mn", "lord", "-i", images / "object.png",
                     "-o", tmp_path / "x.jpg")
    assert result.code != 0 and ".png" in result.err and not (tmp_path / "x.jpg").exists()


def test_overlord_model_without_encoders(overlord_models, images, tmp_path, run_cli):
    base = tmp_path / "base"
    shutil.copytree(overlord_models, base)
    model_dir = BaseDir(base).model_dir("none")
    for stage in ("amortized", "synthesis"):
        (model_dir / f"{stage}.pt").unlink()
    result = run_cli("-bd", base, "manipulate", "-mn", "none", "-i", images / "object.png", "-o", tmp_path / "o.png")
    assert result.code != 0 and "no trained encoders" in result.err and len(result.err_lines) == 1


def test_output_paths_follow_the_input(lord_base, images, tmp_path, run_cli):
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"x")
    result = run_cli("-bd", lord_base, "manipulate", "-mn", "lord", "-i", images, "-o", taken)
    assert result.code != 0 and "must be one too" in result.err and taken.read_bytes() == b"x"
    folder = tmp_path / "folder"
    folder.mkdir()
    assert run_cli("-bd", lord_base, "-q", "manipulate", "-mn", "lord", "-i", images / "gray.jpg", "-o", folder).code == 0
    assert [path.name for path in folder.iterdir()] == ["gray.png"]


def test_align_translates_the_aligned_faces(overlord_models, tmp_path, run_cli):
    """--align gives what aligning the photos first with align-faces gives, for the input and the reference."""
    pytest.importorskip("dlib")
    skimage_data = pytest.importorskip("skimage.data")
    photo = skimage_data.astronaut()
    Image.fromarray(photo).save(tmp_path / "photo.jpg")
    Image.fromarray(np.ascontiguousarray(photo[:, ::-1])).save(tmp_path / "mirrored.jpg")
    common = ["-bd", overlord_models, "manipulate", "-mn", "none"]
    result = run_cli(*common, "-i", tmp_path / "photo.jpg", "-r", tmp_path / "mirrored.jpg", "--align",
                     "-o", tmp_path / "aligned-in-manipulate.png")
    assert result.code == 0, result.err
    for name in ("photo", "mirrored"):
        assert run_cli("align-faces", "-i", tmp_path / f"{name}.jpg", "-o", tmp_path / f"{name}-aligned.png",
                       "--size", 32).code == 0
    assert run_cli(*common, "-i", tmp_path / "photo-aligned.png", "-r", tmp_path / "mirrored-aligned.png",
                   "-o", tmp_path / "aligned-first.png").code == 0
    np.testing.assert_array_equal(read_png(tmp_path / "aligned-in-manipulate.png"),
                                  read_png(tmp_path / "aligned-first.png"))
    unaligned = run_cli(*common, "-i", tmp_path / "photo.jpg", "-r", tmp_path / "mirrored.jpg",
                        "-o", tmp_path / "raw.png")
    assert unaligned.code == 0
    assert not np.array_equal(read_png(tmp_path / "raw.png"), read_png(tmp_path / "aligned-first.png"))
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(tmp_path / "wall.png")
    result = run_cli(*common, "-i", tmp_path / "photo.jpg", "-r", tmp_path / "wall.png", "--align",
                     "-o", tmp_path / "x.png")
    assert result.code == 1 and result.err_lines == [f"error: no face found in {tmp_path / 'wall.png'}"]
