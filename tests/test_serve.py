"""The web page's functions without a browser: the model lists, label names, translations equal to
`manipulate`'s, the checks on uploads, the model overview and its loss curves, and `serve`'s errors."""

import json
import os
import shutil
import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

import config
from conftest import REPO
from lord import serve
from lord.assets import BaseDir, lock_path
from lord.data import store
from lord.errors import UserError
from lord.inference import load_model
from lord.visualize import encode_png

PAD = 0  # manipulate's strips, as the published manipulate_by_labels writes them
PRESETS = {name: config.get_config(name) for name in config.names()}


def read_png(path):
    return np.asarray(Image.open(path))


def cell(strip, index, size):
    return strip[:, index * (size + PAD) : index * (size + PAD) + size]


def png_header(width, height):
    """A PNG file of the given size that holds no pixel data: enough for a header check."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


def test_model_lists(serve_base, tmp_path):
    assert serve.model_names(serve_base) == ["latent-only", "lord"]
    assert serve.translatable_models(serve_base) == ["lord"]
    (BaseDir(tmp_path).models_dir / "half-written").mkdir(parents=True)
    assert serve.model_names(tmp_path) == [] and serve.translatable_models(tmp_path) == []


def test_label_names_come_from_the_data(serve_base, tmp_path):
    config_ = json.loads((BaseDir(serve_base).model_dir("lord") / "config.json").read_text())
    names = serve.label_names(serve_base, config_, 3)
    assert names == ["alpha", "beta", "gamma"]
    assert serve.label_choices(names, 3) == [("0: alpha", 0), ("1: beta", 1), ("2: gamma", 2)]
    assert serve.label_names(serve_base, config_, 4) is None
    assert serve.label_names(serve_base, {**config_, "data": {"name": "syn"}}, 3) is None
    assert serve.label_names(serve_base, {**config_, "data": {"name": "gone"}}, 3) is None
    assert serve.label_names(serve_base, {**config_, "data": {"name": "../x"}}, 3) is None
    assert serve.label_choices(None, 2) == [("0", 0), ("1", 1)]

    ages = store.make_dataset(np.zeros((2, 4, 4, 3), np.uint8), [0, 1], age=np.asarray([0, 1]),
                              age_names=np.asarray(["0-9", "10-19"]))
    store.save(BaseDir(tmp_path).data_path("faces"), ages)
    overlord = {"arch": "overlord", "labeled_attribute": "age", "data": {"name": "faces"}}
    assert serve.label_names(tmp_path, overlord, 2) == ["0-9", "10-19"]


def test_translation_is_what_manipulate_writes(serve_base, tmp_path, run_cli):
    uploads = serve_base / "uploads"
    model = load_model(serve_base, "lord", device="cpu")
    image = serve.read_upload(uploads / "wide.png", 3)
    reference = serve.read_upload(uploads / "reference.png", 3)
    common = ["-bd", serve_base, "-q", "manipulate", "-mn", "lord", "-i", uploads / "wide.png"]
    assert run_cli(*common, "--label", "2", "-o", tmp_path / "label.png").code == 0
    assert run_cli(*common, "-o", tmp_path / "strip.png").code == 0
    assert run_cli(*common, "-r", uploads / "reference.png", "-o", tmp_path / "reference.png").code == 0

    to_label = serve.translate(model, image, label=2)
    np.testing.assert_array_equal(to_label.translation, cell(read_png(tmp_path / "label.png"), 1, 16))
    np.testing.assert_array_equal(to_label.model_input, cell(read_png(tmp_path / "label.png"), 0, 16))
    np.testing.assert_array_equal(to_label.strip, read_png(tmp_path / "strip.png"))
    by_reference = serve.translate(model, image, reference=reference)
    np.testing.assert_array_equal(by_reference.translation, read_png(tmp_path / "reference.png"))
    np.testing.assert_array_equal(by_reference.strip, to_label.strip)
    assert not np.array_equal(by_reference.translation, to_label.translation)
    with pytest.raises(UserError, match="out of range"):
        serve.translate(model, image, label=3)


def test_overlord_translation_is_what_manipulate_writes(overlord_models, serve_base, tmp_path, run_cli):
    data = store.load(BaseDir(overlord_models).data_path("syn32"))
    Image.fromarray(data.imgs[1]).save(tmp_path / "reference.png")
    content = serve_base / "uploads" / "gray.jpg"
    common = ["-bd", overlord_models, "-q", "manipulate", "-mn", "pose-invariant", "-i", content]
    assert run_cli(*common, "-r", tmp_path / "reference.png", "-o", tmp_path / "reference-out.png").code == 0
    assert run_cli(*common, "-o", tmp_path / "strip.png").code == 0
    model = load_model(overlord_models, "pose-invariant", device="cpu")
    image, reference = serve.read_upload(content, 3), serve.read_upload(tmp_path / "reference.png", 3)
    by_reference = serve.translate(model, image, reference=reference)
    np.testing.assert_array_equal(by_reference.translation, read_png(tmp_path / "reference-out.png"))
    np.testing.assert_array_equal(by_reference.strip, read_png(tmp_path / "strip.png"))
    to_label = serve.translate(model, image, label=1)
    # generated alone, where the strip generates every label at once: float32 rounding, one grey level at most
    difference = np.abs(to_label.translation.astype(np.int16) - cell(read_png(tmp_path / "strip.png"), 2, 32))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01
    np.testing.assert_array_equal(to_label.strip, read_png(tmp_path / "strip.png"))


def test_label_value_from_the_list_or_a_script():
    assert serve.label_value(2) == 2 and serve.label_value("2") == 2 and serve.label_value(2.0) == 2
    for choice, message in ((None, "no label value chosen"), ("", "no label value chosen"),
                            ("gamma", "not a whole number from the list"), (2.7, "not a whole number"),
                            ("2.7", "not a whole number"), (float("inf"), "not a whole number"),
                            ("Infinity", "not a whole number"), (float("nan"), "not a whole number"),
                            (True, "not a whole number"), ("1" * 40, "not a whole number")):
        with pytest.raises(UserError, match=message):
            serve.label_value(choice)


def test_bad_uploads_are_one_message(serve_base, tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with open(tmp_path / "big.png", "wb") as file:
        file.truncate(serve.MAX_UPLOAD_BYTES + 1)
    (tmp_path / "wide-header.png").write_bytes(png_header(12_000, 8_000))
    (tmp_path / "bomb-header.png").write_bytes(png_header(40_000, 40_000))
    (tmp_path / "truncated.png").write_bytes((serve_base / "uploads" / "reference.png").read_bytes()[:80])
    cases = {
        None: "no image given",
        serve_base / "uploads" / "notes.txt": "'notes.txt' is not an image file",
        tmp_path / "empty.png": "'empty.png' is an empty file",
        tmp_path / "big.png": "MB this page accepts",
        tmp_path / "wide-header.png": "megapixels this page accepts",
        tmp_path / "bomb-header.png": "megapixels this page accepts",
        tmp_path / "truncated.png": "'truncated.png'",
        tmp_path / "gone.png": "upload it again",
    }
    for path, message in cases.items():
        with pytest.raises(UserError, match=message) as error:
            serve.read_upload(path, 3)
        assert str(tmp_path) not in str(error.value)
    gray = serve.read_upload(serve_base / "uploads" / "gray.jpg", 1)
    assert gray.dtype == np.uint8 and gray.shape == (16, 16, 1)


def test_result_files_hold_manipulates_png_bytes(tmp_path):
    files = serve.ResultFiles(tmp_path)
    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    path = files.image(image, "photo-to-label-2.png")
    assert open(path, "rb").read() == encode_png(image) and path.endswith("/photo-to-label-2.png")
    assert files.image(image, "photo-to-label-2.png") == path and files.image(image + 1, "photo-to-label-2.png") != path
    assert np.asarray(Image.open(files.image(image[..., :1], "gray.png"))).shape == (4, 4)
    assert files.image(None, "none.png") is None
    assert serve.file_stem("/uploads/my photo (1).JPG") == "my_photo_1_" and serve.file_stem("/x/.png") == ".png"


def test_models_are_cached_until_their_files_change(serve_base, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(serve_base, base)
    cache = serve.ModelCache(base, "cpu")
    first = cache.get("lord")
    assert cache.get("lord") is first
    weights = BaseDir(base).model_dir("lord") / "amortized.pt"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert cache.get("lord") is not first
    shutil.rmtree(BaseDir(base).model_dir("lord"))
    with pytest.raises(UserError, match="no model named 'lord'"):
        cache.get("lord")
    with pytest.raises(UserError, match="no trained encoders"):
        serve.translate(cache.get("latent-only"), np.zeros((8, 8, 3), np.uint8), label=0)


def test_overview_of_a_trained_model(serve_base):
    before = sorted((path.name, path.stat().st_mtime_ns) for path in BaseDir(serve_base).model_dir("lord").rglob("*"))
    overview = serve.model_overview(serve_base, "lord", PRESETS)
    assert overview.stages == [("latent", "done (1 epoch)"), ("amortized", "done (1 epoch)")]
    assert {"train.n_epochs=1", "train_encoders.n_epochs=1", "adain_dim=16"} <= set(overview.differences)
    assert not any(item.startswith(("data.", "seed=", "config_name=")) for item in overview.differences)
    assert sorted(overview.curves) == ["amortized", "latent"]
    assert list(overview.curves["latent"])[:2] == ["loss", "reconstruction"]
    assert {"content_regression", "class_regression"} <= set(overview.curves["amortized"])
    assert all(points == [(1, points[0][1])] for points in overview.curves["latent"].values())
    path, epoch = overview.samples["amortized"]
    assert path.name == "amortized-epoch-0001.png" and epoch == 1
    assert serve.read_sample_grid(path) == path.read_bytes()
    assert serve.read_sample_grid(path.with_name("gone.png")) is None
    assert overview.training is None
    text = serve.overview_markdown(overview)
    assert "preset `lord-tiny`" in text and "`train.n_epochs=1`" in text and "stage 2, amortized encoders: done" in text
    assert serve.model_overview(serve_base, "lord", {}).differences is None
    after = sorted((path.name, path.stat().st_mtime_ns) for path in BaseDir(serve_base).model_dir("lord").rglob("*"))
    assert before == after


def test_overview_follows_a_run_in_progress(serve_base, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(serve_base, base)
    model_dir = BaseDir(base).model_dir("lord")
    (model_dir / "amortized.pt").unlink()
    signature = serve.overview_signature(base, "lord")
    records = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    latent = records[0]
    (model_dir / "metrics.jsonl").write_text(
        "".join(json.dumps(record) + "\n" for record in records)
        + json.dumps({**latent, "stage": "amortized", "epoch": 2, "loss": 0.5}) + "\n"
        + '{"stage": "amortized", "epoch": 3, "lo')
    lock_path(model_dir).write_text("4242 trainer-host 0\n")
    assert serve.overview_signature(base, "lord") != signature
    overview = serve.model_overview(base, "lord", PRESETS)
    assert dict(overview.stages)["amortized"] == "epoch 2 of 1 finished"
    assert overview.curves["amortized"]["loss"][-1] == (2, 0.5)
    assert overview.training == "4242 on trainer-host"
    assert "a training run holds the model's lock (process 4242 on trainer-host)" in serve.overview_markdown(overview)
    assert serve.translatable_models(base) == []


def test_serve_without_gradio_is_one_line(serve_base, run_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)
    result = run_cli("-bd", serve_base, "serve", "-mn", "lord")
    assert result.code == 1 and result.err_lines == ["error: serve needs the web extra: pip install -e .[web]"]


@pytest.mark.parametrize("args, message", [
    (["serve", "-mn", "nothing"], "no model named 'nothing'"),
    (["serve", "-mn", "../lord"], "invalid model name"),
    (["serve", "--port", "70000"], "port number up to 65535"),
])
def test_serve_errors_are_one_line(serve_base, run_cli, args, message):
    result = run_cli("-bd", serve_base, *args)
    assert result.code != 0 and len(result.err_lines) == 1 and message in result.err, result


def test_serve_needs_an_existing_base_dir(tmp_path, run_cli):
    result = run_cli("-bd", tmp_path / "missing", "serve")
    assert result.code == 1 and result.err_lines == [f"error: no base directory {tmp_path / 'missing'}"]


def test_help_opens_with_a_sentence_for_users(run_cli):
    result = run_cli("--help")
    assert result.code == 0
    opening = result.out.split("usage:")[0]
    assert opening.startswith("Disentangle") and "python lord.py demo" in opening and "serve" in opening


def test_readme_shows_the_page_and_its_command():
    readme = (REPO / "README.md").read_text()
    assert "![the web page" in readme and (REPO / "assets" / "serve.png").is_file()
    assert "python lord.py serve -mn demo" in readme


def test_face_models_are_told_apart_by_their_labels(serve_base, tmp_path):
    lord_config = json.loads((BaseDir(serve_base).model_dir("lord") / "config.json").read_text())
    assert not serve.is_face_model(serve_base, lord_config)
    assert serve.is_face_model(tmp_path, {"arch": "overlord", "labeled_attribute": "age", "data": {"name": "gone"}})
    people = store.make_dataset(np.zeros((2, 4, 4, 3), np.uint8), [0, 1], identity=np.asarray([0, 1]))
    store.save(BaseDir(tmp_path).data_path("rafd"), people)
    assert serve.is_face_model(tmp_path, {**lord_config, "data": {"name": "rafd"}})


def test_aligned_uploads_translate_as_manipulate_align(serve_base, tmp_path, run_cli):
    pytest.importorskip("dlib")
    skimage_data = pytest.importorskip("skimage.data")
    from lord.faces import FaceAligner

    assert serve.alignment_available()
    Image.fromarray(skimage_data.astronaut()).save(tmp_path / "photo.png")
    model = load_model(serve_base, "lord", device="cpu")
    image = serve.model_image(tmp_path / "photo.png", model, align=True)
    np.testing.assert_array_equal(image, FaceAligner().align(skimage_data.astronaut(), 16))
    result = serve.translate(model, image, label=1)
    np.testing.assert_array_equal(result.model_input, image)  # the page shows the aligned input
    assert run_cli("-bd", serve_base, "-q", "manipulate", "-mn", "lord", "-i", tmp_path / "photo.png", "--align",
                   "--label", "1", "-o", tmp_path / "out.png").code == 0
    np.testing.assert_array_equal(result.translation, cell(read_png(tmp_path / "out.png"), 1, 16))
    assert not np.array_equal(serve.model_image(tmp_path / "photo.png", model), image)
    with pytest.raises(UserError, match=r"no face found in reference image 'reference.png' \(untick"):
        serve.model_image(serve_base / "uploads" / "reference.png", model, align=True, what="reference image")
