"""The OverLORD paper's evaluation protocols in `evaluate`: the exported translations (`--export`),
the paper's FID protocol (`fid_paper`) and the face metrics (`face`)."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import CLI, overlord_set_args, set_args
from lord.assets import BaseDir
from lord.data import store
from lord.evaluation import evaluate as evaluation
from lord.evaluation.pairs import sample_pairs
from lord.model import load_stage, read_config



@pytest.fixture(scope="module")
def lord_base(tmp_path_factory):
    """`syn` (16 px, 3 classes), `one-class` (its images of class 0) and `tiny`, a LORD model trained
    1 epoch per stage on `syn`."""
    base = tmp_path_factory.mktemp("paper-evaluation")
    common = ["-bd", str(base), "-q", "--device", "cpu"]
    assert CLI.main([*common, "preprocess", "-di", "synthetic", "-dn", "syn", "--img-size", "16",
                     "--n-classes", "3"]) == 0
    paths = BaseDir(base)
    syn = store.load(paths.data_path("syn"))
    store.save(paths.data_path("one-class"), syn.subset(np.flatnonzero(syn.classes == 0)))
    tiny = set_args("train.n_epochs=1", "train_encoders.n_epochs=1")
    assert CLI.main([*common, "train", "-dn", "syn", "-mn", "tiny", "-cf", "lord-tiny", *tiny]) == 0
    assert CLI.main([*common, "train-encoders", "-dn", "syn", "-mn", "tiny"]) == 0
    return base


def read_png(path):
    return np.asarray(Image.open(path))


def files_under(directory):
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file())


# ---------------------------------------------------------------- --export


def test_export_writes_the_authors_layout_and_an_index_of_the_scored_pairs(lord_base, offline, fast_classifier,
                                                                          run_cli, tmp_path):
    export = tmp_path / "exported"
    output = tmp_path / "result.json"
    cli = run_cli("-bd", lord_base, "--device", "cpu", "evaluate", "-mn", "tiny", "-dn", "syn", "--stage", "amortized",
                  "--n-pairs", "24", "--output", output, "--export", export)
    assert cli.code == 0, cli
    assert f"exported the translations to {export}" in cli.out
    result = json.loads(output.read_text())
    index = json.loads((export / "index.json").read_text())
    for key, value in result.items():
        assert index[key] == value
    assert index["evaluation"] == str(output) and index["labeled_attribute"] == "classes"
    assert index["diversity"] is None

    dataset = store.load(BaseDir(lord_base).data_path("syn"))
    source, reference = sample_pairs(dataset.classes, 24, seed=2)
    pairs = index["pairs"]
    assert [(pair["content"], pair["style"]) for pair in pairs] == list(zip(source.tolist(), reference.tolist()))
    assert files_under(export) == sorted(
        {"index.json"} | {pair[key] for pair in pairs for key in ("content_file", "style_file", "translation_file")}
    )
    model_dir = BaseDir(lord_base).model_dir("tiny")
    model = load_stage(model_dir, "amortized", read_config(model_dir))
    for pair in pairs:
        a, b = pair["content"], pair["style"]
        assert (pair["content_label"], pair["style_label"]) == (dataset.classes[a], dataset.classes[b])
        assert pair["content_file"] == f"translations/content/{a}.png"
        assert pair["style_file"] == f"translations/style/{b}.png"
        assert pair["translation_file"] == f"translations/translation/{a}-{b}.png"
        content_id, style_id = (export / pair["translation_file"]).stem.split("-")
        assert (export / "translations/content" / f"{content_id}.png").is_file()
        assert (export / "translations/style" / f"{style_id}.png").is_file()
        assert np.array_equal(read_png(export / pair["content_file"]), dataset.imgs[a])
        assert np.array_equal(read_png(export / pair["style_file"]), dataset.imgs[b])
    images = torch.from_numpy(dataset.imgs).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        expected = model.generator(model.content_encoder(images[source]), model.class_encoder(images[reference]))
    expected = np.rint(expected.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).astype(np.int64)
    written = np.stack([read_png(export / pair["translation_file"]) for pair in pairs]).astype(np.int64)
    assert np.abs(written - expected).max() <= 1 and np.mean(written == expected) > 0.99

    again = evaluation.evaluate(lord_base, "tiny", "syn", stage="amortized", n_pairs=24, device="cpu", quiet=True,
                                output=tmp_path / "without-export.json")
    assert again == result


def test_export_refuses_a_used_directory_and_single_label_data(lord_base, offline, run_cli, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    output = tmp_path / "result.json"
    for data, export, message in (("syn", used, "is not an empty directory"),
                                  ("syn", used / "notes.txt", "is not an empty directory"),
                                  ("one-class", tmp_path / "new", "a single label value")):
        cli = run_cli("-bd", lord_base, "-q", "--device", "cpu", "evaluate", "-mn", "tiny", "-dn", data,
                      "--output", output, "--export", export)
        assert cli.code != 0
        assert len(cli.err_lines) == 1 and cli.err_lines[0].startswith("error: ") and message in cli.err_lines[0]
    assert files_under(tmp_path) == ["used/notes.txt"]


def test_an_interrupted_export_leaves_nothing_behind(lord_base, offline, fast_classifier, tmp_path, monkeypatch):
    calls = []
    real = evaluation.TranslationExport.add_pairs

    def add_then_fail(self, *args):
        real(self, *args)
        calls.append(len(self.pairs))
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluation.TranslationExport, "add_pairs", add_then_fail)
    empty = tmp_path / "empty"
    empty.mkdir()
    for export in (tmp_path / "new", empty):
        with pytest.raises(KeyboardInterrupt):
            evaluation.evaluate(lord_base, "tiny", "syn", n_pairs=8, device="cpu", quiet=True,
                                output=tmp_path / "result.json", export=export)
    assert calls == [8, 8]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["empty"] and not any(empty.iterdir())


@pytest.mark.parametrize("kind", ["link to an empty directory", "link to nothing", "missing parent"])
def test_the_export_target_is_checked_before_the_evaluation(lord_base, offline, run_cli, tmp_path, monkeypatch, kind):
    def no_evaluation(*args, **kwargs):
        raise AssertionError("the evaluation started")

    monkeypatch.setattr(evaluation, "lord_codes", no_evaluation)
    (tmp_path / "empty").mkdir()
    export = tmp_path / "export"
    if kind == "missing parent":
        export = tmp_path / "nowhere" / "export"
    else:
        export.symlink_to(tmp_path / ("empty" if kind == "link to an empty directory" else "missing"))
    before = files_under(tmp_path)
    cli = run_cli("-bd", lord_base, "-q", "--device", "cpu", "evaluate", "-mn", "tiny", "-dn", "syn",
                  "--output", tmp_path / "result.json", "--export", export)
    assert cli.code == 1 and len(cli.err_lines) == 1 and "--export" in cli.err, cli
    assert ("does not exist" if kind == "missing parent" else "symbolic link") in cli.err
    assert files_under(tmp_path) == before


def test_sigterm_cleans_up_as_sigint_does_and_never_touches_a_directory_it_did_not_make(lord_base, offline,
                                                                                        fast_classifier, run_cli,
                                                                                        tmp_path, monkeypatch):
    import os
    import signal

    real = evaluation.TranslationExport.add_pairs

    def add_then_terminate(self, *args):
        real(self, *args)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(evaluation.TranslationExport, "add_pairs", add_then_terminate)
    lookalike = tmp_path / f".new.export-{os.getpid()}-mine"
    lookalike.mkdir()
    (lookalike / "notes.txt").write_text("mine")
    cli = run_cli("-bd", lord_base, "-q", "--device", "cpu", "evaluate", "-mn", "tiny", "-dn", "syn", "--n-pairs",
                  "8", "--output", tmp_path / "result.json", "--export", tmp_path / "new")
    errors = [line for line in cli.err_lines if not line.startswith("warning: ")]
    assert cli.code == 130 and errors == ["error: SIGTERM received: the export was not written"], cli
    assert sorted(path.name for path in tmp_path.iterdir()) == [lookalike.name]
    assert (lookalike / "notes.txt").read_text() == "mine"


# lord.py with the evaluation's networks offline, a short classifier, and a SIGKILL once the export holds files.
KILLED_EXPORT = """
import os, runpy, signal, sys
import torch
def offline(*args, **kwargs):
    raise OSError("offline")
torch.hub.load_state_dict_from_url = offline
from lord.evaluation import classifier, export
classifier.EPOCHS, classifier.MIN_STEPS = 1, 10
real = export.TranslationExport.add_pairs
def add_then_die(self, *args):
    real(self, *args)
    os.kill(os.getpid(), signal.SIGKILL)
export.TranslationExport.add_pairs = add_then_die
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_after_a_sigkill_the_next_export_removes_the_leftover(lord_base, offline, fast_classifier, run_cli, tmp_path):
    import os
    import subprocess
    import sys

    from conftest import REPO

    args = ["-bd", str(lord_base), "-q", "--device", "cpu", "evaluate", "-mn", "tiny", "-dn", "syn", "--n-pairs", "8",
            "--output", str(tmp_path / "result.json"), "--export", str(tmp_path / "new")]
    process = subprocess.run([sys.executable, "-c", KILLED_EXPORT, str(REPO / "lord.py"), *args], capture_output=True,
                             env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO)), timeout=300)
    assert process.returncode == -9, process.stderr[-2000:]
    (leftover,) = tmp_path.iterdir()
    assert leftover.name.startswith(".new.export-") and files_under(leftover)
    cli = run_cli(*args)
    assert cli.code == 0, cli
    assert sorted(path.name for path in tmp_path.iterdir()) == ["new", "result.json"]


def test_a_failed_export_still_writes_the_result(lord_base, offline, fast_classifier, run_cli, tmp_path, monkeypatch):
    import errno

    from lord.evaluation import export

    def full_disk(path, image):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export, "_save", full_disk)
    output = tmp_path / "result.json"
    cli = run_cli("-bd", lord_base, "-q", "--device", "cpu", "evaluate", "-mn", "tiny", "-dn", "syn", "--n-pairs", "8",
                  "--output", output, "--export", tmp_path / "new")
    errors = [line for line in cli.err_lines if not line.startswith("warning: ")]
    assert cli.code == 1 and len(errors) == 1 and errors[0].startswith("error: the export was not written"), cli
    assert "No space left on device" in errors[0] and f"the evaluation result was written to {output}" in errors[0]
    assert json.loads(output.read_text())["model"] == "tiny"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["result.json"]


@pytest.fixture(scope="module")
def overlord_base(synthetic32_base, tmp_path_factory):
    """`syn32` and `over`, a pose-invariant OverLORD model trained 1 epoch in stages 1 and 2."""
    base = tmp_path_factory.mktemp("paper-evaluation-overlord")
    shutil.copytree(synthetic32_base, base, dirs_exist_ok=True)
    common = ["-bd", str(base), "-q", "--device", "cpu"]
    short = overlord_set_args("pose-invariant", "disentanglement.n_epochs=1", "amortization.n_epochs=1")
    assert CLI.main([*common, "train", "-dn", "syn32", "-mn", "over", "-cf", "overlord-tiny-pose", *short]) == 0
    assert CLI.main([*common, "train-encoders", "-dn", "syn32", "-mn", "over"]) == 0
    return base


def test_export_of_an_overlord_model_holds_the_diversity_sets_in_the_lpips_layout(overlord_base, offline,
                                                                                 fast_classifier, tmp_path):
    export = tmp_path / "exported"
    evaluation.evaluate(overlord_base, "over", "syn32", n_pairs=30, device="cpu", quiet=True,
                        output=tmp_path / "result.json", export=export)
    index = json.loads((export / "index.json").read_text())
    assert index["labeled_attribute"] == "classes" and len(index["pairs"]) == 30
    diversity = index["diversity"]
    assert len(diversity) == 3
    dataset = store.load(BaseDir(overlord_base).data_path("syn32"))
    labels = dataset.classes
    pairs = index["pairs"][:3]
    for entry, pair in zip(diversity, pairs):
        assert entry["content"] == pair["content"] and entry["label"] == labels[pair["style"]]
        assert len(entry["references"]) == evaluation.DIVERSITY_REFERENCES
        assert all(labels[reference] == entry["label"] for reference in entry["references"])
        direction = f"diversity/translations/{labels[entry['content']]}-to-{entry['label']}"
        assert entry["content_file"] == f"{direction}/content/{entry['content']}.png"
        assert np.array_equal(read_png(export / entry["content_file"]), dataset.imgs[entry["content"]])
        assert len(entry["translation_files"]) == evaluation.DIVERSITY_REFERENCES
        for file in entry["translation_files"]:
            assert file.startswith(f"{direction}/translation/{entry['content']}-")
            assert read_png(export / file).shape == dataset.imgs.shape[1:]
    for direction in (export / "diversity/translations").iterdir():
        for content in (direction / "content").iterdir():
            assert len(list((direction / "translation").glob(f"{content.stem}-*.png"))) >= 10


# ---------------------------------------------------------------- fid_paper


def torchvision_inception_layout(with_batch_counters=True):
    """Keys and shapes of torchvision's inception_v3_google-0cc3c7bd.pth: the FID network's layout with
    the auxiliary head and a 1000-way fc."""
    from test_evaluation_blocks import official_inception_layout

    layout = official_inception_layout(with_batch_counters)
    layout["fc.weight"], layout["fc.bias"] = (1000, 2048), (1000,)
    for name, cin, cout, kernel in (("AuxLogits.conv0", 768, 128, 1), ("AuxLogits.conv1", 128, 768, 5)):
        layout[f"{name}.conv.weight"] = (cout, cin, kernel, kernel)
        for part in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{name}.bn.{part}"] = (cout,)
        if with_batch_counters:
            layout[f"{name}.bn.num_batches_tracked"] = ()
    layout["AuxLogits.fc.weight"], layout["AuxLogits.fc.bias"] = (1000, 768), (1000,)
    return layout


def pil_pipeline(image, size=256):
    """What the paper's data loader feeds the network for one uint8 (H, W, C) image: PIL Resize to
    size x size, then to 299 x 299 (bilinear), ToTensor, ImageNet Normalize."""
    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).convert("RGB")
    picture = picture.resize((size, size), Image.BILINEAR).resize((299, 299), Image.BILINEAR)
    array = np.asarray(picture, dtype=np.float32) / 255
    return (array - np.array([0.485, 0.456, 0.406], dtype=np.float32)) / np.array([0.229, 0.224, 0.225],
                                                                                 dtype=np.float32)


@pytest.mark.parametrize("in_size, out_size", [(128, 256), (256, 299), (512, 256), (32, 224), (128, 224), (300, 299),
                                               (64, 64), (37, 5)])
def test_the_8_bit_resize_is_pillows_to_the_grey_level(in_size, out_size):
    from lord.evaluation.pil_resize import resize_8bit

    images = np.random.default_rng(in_size).integers(0, 256, (2, in_size, in_size + 3, 3), dtype=np.uint8)
    expected = np.stack([np.asarray(Image.fromarray(image).resize((out_size + 1, out_size), Image.BILINEAR))
                         for image in images])
    resized = resize_8bit(torch.from_numpy(images).permute(0, 3, 1, 2).float(), out_size, out_size + 1)
    assert np.array_equal(resized.permute(0, 2, 3, 1).numpy(), expected)
    naive = torch.nn.functional.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2).float(),
                                            size=(out_size, out_size + 1), mode="bilinear", antialias=True)
    if (in_size, out_size) != (64, 64):
        assert not np.array_equal(naive.round().permute(0, 2, 3, 1).numpy(), expected)


@pytest.mark.parametrize("size, channels", [(64, 3), (128, 3), (300, 3), (32, 1)])
def test_the_paper_fid_preprocessing_is_that_of_its_data_loader(size, channels):
    from lord.evaluation.fid_paper import preprocess

    images = np.random.default_rng(size).integers(0, 256, (2, size, size, channels), dtype=np.uint8)
    floats = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    expected = np.stack([pil_pipeline(image) for image in images]).transpose(0, 3, 1, 2)
    prepared = preprocess(floats)
    assert prepared.shape == (2, 3, 299, 299) and prepared.dtype == torch.float32
    assert np.abs(prepared.numpy() - expected).max() < 1e-5
    generated = floats + torch.rand(floats.shape) * 0.4 / 255 - 0.2 / 255
    assert torch.equal(preprocess(generated), prepared)


@pytest.mark.parametrize("with_batch_counters", [True, False])
def test_the_paper_inception_loads_torchvisions_file_layout(tmp_path, offline, with_batch_counters):
    from test_evaluation_blocks import fake_weights, official_inception_layout

    from lord.errors import UserError
    from lord.evaluation import fid_paper, inception

    layout = torchvision_inception_layout(with_batch_counters)
    state = fake_weights(layout)
    path = tmp_path / fid_paper.IMAGENET_INCEPTION_WEIGHTS.file_name
    torch.save(state, path)
    assert path.stat().st_size < 1_000_000
    features = fid_paper.load_paper_inception(path, download=False)
    loaded = features.network.state_dict()
    assert set(loaded) == set(torchvision_inception_layout())
    assert torch.equal(loaded["AuxLogits.fc.bias"], state["AuxLogits.fc.bias"])
    assert not features.training and not any(parameter.requires_grad for parameter in features.parameters())
    with torch.no_grad():
        output = features(torch.rand(2, 3, 40, 40))
    assert output.shape == (2, inception.FEATURE_DIM) and torch.isfinite(output).all()

    ones = torch.ones(1, 1, 4, 4)
    assert inception.average_pool(ones, pad_counted=True)[0, 0, 0, 0] == pytest.approx(4 / 9)
    assert features.network.Mixed_5b.pad_counted and not features.network.Mixed_7c.max_pool
    community = tmp_path / "pt_inception.pth"
    torch.save(fake_weights(official_inception_layout()), community)
    with pytest.raises(UserError, match=r"missing AuxLogits.*wrong shapes: fc\.weight"):
        fid_paper.load_paper_inception(community, download=False)
    with pytest.raises(UserError, match="LORD_IMAGENET_INCEPTION_WEIGHTS") as error:
        fid_paper.load_paper_inception()
    assert fid_paper.IMAGENET_INCEPTION_WEIGHTS.url in str(error.value)
    assert "could not be downloaded" in str(error.value)


# ---------------------------------------------------------------- face metrics


def test_the_face_arithmetic():
    from lord.evaluation.face import angle_error, cosine_distance, landmark_error

    assert angle_error(179.0, -179.0) == pytest.approx(2.0) and angle_error(-170.0, 170.0) == pytest.approx(20.0)
    assert angle_error(10.0, 370.0) == pytest.approx(0.0) and angle_error(0.0, 180.0) == pytest.approx(180.0)
    assert np.allclose(angle_error(np.array([30.0, -90.0, 1.0]), np.array([-30.0, 90.0, 1.0])), [60.0, 180.0, 0.0])
    points = np.random.default_rng(0).random((68, 2)) * 100
    assert landmark_error(points, points) == 0.0
    assert landmark_error(points, points + [3.0, 4.0]) == pytest.approx(12.5)
    vector = np.array([0.6, 0.8, 0.0])
    assert cosine_distance(vector, 2 * vector) == pytest.approx(0.0, abs=1e-12)
    assert cosine_distance(vector, np.array([0.0, 0.0, 1.0])) == pytest.approx(1.0)
    assert cosine_distance(vector, -vector) == pytest.approx(2.0)


OFFSETS = np.random.default_rng(1).normal(size=(68, 2)) * 3


def bright_square_landmarks(images):
    """A stand-in landmark detector: 68 points at fixed offsets from the centre of the bright pixels;
    no face where nothing is bright."""
    found = []
    for image in images:
        rows, columns = np.nonzero(image.max(axis=-1) > 127)
        found.append(None if len(rows) == 0 else OFFSETS + [columns.mean(), rows.mean()])
    return found


def colour_embeddings(images):
    """A stand-in embedder: the mean colour, None where the image is dark."""
    return [None if image.max() <= 127 else image.reshape(-1, 3).mean(axis=0) + 1.0 for image in images]


def square_images(positions, size=24, colour=(255, 200, 100)):
    images = np.zeros((len(positions), size, size, 3), dtype=np.uint8)
    for image, (row, column) in zip(images, positions):
        image[row:row + 5, column:column + 5] = colour
    return images


def score(networks, contents, styles, translations):
    from lord.evaluation.face import FaceMetrics

    metrics = FaceMetrics(networks)
    count = len(contents)
    metrics.add_pairs(np.arange(count), np.arange(count) + count, contents, styles, translations)
    return metrics.result()


def test_face_metrics_of_identical_images_are_zero():
    from lord.evaluation.face import FaceNetworks

    def poses(images):
        return np.stack([np.full(3, float(image.mean())) for image in images])

    networks = FaceNetworks(bright_square_landmarks, colour_embeddings, poses)
    images = square_images([(4, 6)] * 5)
    result = score(networks, images, images, images)
    assert result == {"landmarks": 0.0, "identity": pytest.approx(0.0, abs=1e-12),
                      "head_pose": {"yaw": 0.0, "pitch": 0.0, "roll": 0.0}, "n_failed": 0}


def test_face_metrics_measure_a_known_shift_and_wrap_angles_around():
    from lord.evaluation.face import FaceNetworks

    def poses(images):
        """+179 degrees for a square in the top half, -179 in the bottom half, as yaw, pitch and roll."""
        rows = [np.nonzero(image.max(axis=-1))[0].mean() for image in images]
        return np.array([[179.0, -179.0, 10.0] if row < 12 else [-179.0, 179.0, 10.0] for row in rows])

    contents = square_images([(2, 2), (3, 8), (5, 1)])
    translations = square_images([(2 + 12, 2 + 3), (3 + 12, 8 + 3), (5 + 12, 1 + 3)])
    styles = square_images([(1, 1)] * 3, colour=(100, 200, 255))
    result = score(FaceNetworks(bright_square_landmarks, colour_embeddings, poses), contents, styles, translations)
    assert result["landmarks"] == pytest.approx((12**2 + 3**2) / 2)
    assert result["head_pose"] == pytest.approx({"yaw": 2.0, "pitch": 2.0, "roll": 0.0})
    style, translation = (np.array(colour) * 25 / 24**2 + 1 for colour in ((100, 200, 255), (255, 200, 100)))
    expected_identity = 1 - style @ translation / (np.linalg.norm(style) * np.linalg.norm(translation))
    assert result["identity"] == pytest.approx(expected_identity) and expected_identity > 0.01
    assert result["n_failed"] == 0


def test_face_metrics_leave_out_pairs_without_a_face_and_detect_each_image_once():
    from lord.evaluation.face import FaceMetrics, FaceNetworks

    calls = []

    def counted_landmarks(images):
        calls.append(len(images))
        return bright_square_landmarks(images)

    blank = np.zeros((1, 24, 24, 3), dtype=np.uint8)
    square = square_images([(4, 4)])
    metrics = FaceMetrics(FaceNetworks(landmarks=counted_landmarks))
    contents = np.concatenate([square, square, blank, square])
    translations = np.concatenate([square, blank, square, square])
    metrics.add_pairs(np.array([7, 7, 8, 7]), np.array([1, 2, 3, 4]), contents, contents, translations)
    metrics.add_pairs(np.array([7]), np.array([5]), square, square, square)
    assert calls == [2, 4, 1]
    assert metrics.result() == {"landmarks": 0.0, "identity": None, "head_pose": None, "n_failed": 2}
    no_faces = FaceMetrics(FaceNetworks(embeddings=colour_embeddings))
    no_faces.add_pairs(np.array([0]), np.array([1]), square, blank, square)
    assert no_faces.result() == {"landmarks": None, "identity": None, "head_pose": None, "n_failed": 1}


def hopenet_layout():
    """Keys and shapes of hopenet_robust_alpha1.pkl: torchvision's ResNet-50 trunk without its fc,
    three 66-bin heads and the unused fc_finetune."""
    layout = {"conv1.weight": (64, 3, 7, 7)}

    def batch_norm(name, channels):
        for part in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{name}.{part}"] = (channels,)

    batch_norm("bn1", 64)
    channels = 64
    for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for block in range(blocks):
            name = f"layer{stage}.{block}"
            layout[f"{name}.conv1.weight"] = (width, channels, 1, 1)
            layout[f"{name}.conv2.weight"] = (width, width, 3, 3)
            layout[f"{name}.conv3.weight"] = (4 * width, width, 1, 1)
            for index, size in ((1, width), (2, width), (3, 4 * width)):
                batch_norm(f"{name}.bn{index}", size)
            if block == 0:
                layout[f"{name}.downsample.0.weight"] = (4 * width, channels, 1, 1)
                batch_norm(f"{name}.downsample.1", 4 * width)
            channels = 4 * width
    for head in ("yaw", "pitch", "roll"):
        layout[f"fc_{head}.weight"], layout[f"fc_{head}.bias"] = (66, 2048), (66,)
    layout["fc_finetune.weight"], layout["fc_finetune.bias"] = (3, 2051), (3,)
    return layout


def test_hopenet_loads_the_published_key_layout_and_reads_angles_from_bins(tmp_path, offline):
    from test_evaluation_blocks import fake_weights

    from lord.errors import UserError
    from lord.evaluation import hopenet

    layout = hopenet_layout()
    assert len(layout) == 273
    state = fake_weights(layout)
    for head, bin_index in (("yaw", 33), ("pitch", 0), ("roll", 65)):
        state[f"fc_{head}.weight"] = torch.zeros(1).expand(66, 2048)
        state[f"fc_{head}.bias"] = torch.full((66,), -50.0)
        state[f"fc_{head}.bias"][bin_index] = 50.0
    path = tmp_path / hopenet.HOPENET_WEIGHTS.file_name
    torch.save(state, path)
    assert path.stat().st_size < 1_000_000
    estimator = hopenet.load_head_pose(path)
    assert set(estimator.network.state_dict()) == set(layout) | {
        key.replace("running_var", "num_batches_tracked") for key in layout if key.endswith("running_var")}
    angles = estimator(np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8))
    assert angles.shape == (3, 3) and np.allclose(angles, [[0.0, -99.0, 96.0]] * 3)
    uniform = hopenet.expected_angle(torch.zeros(2, 66))
    assert torch.allclose(uniform, torch.full((2,), 32.5 * 3 - 99))

    monkeypatched = dict(state)
    monkeypatched["module.fc_yaw.bias"] = monkeypatched.pop("fc_yaw.bias")
    torch.save(monkeypatched, tmp_path / "other.pkl")
    with pytest.raises(UserError, match=r"missing fc_yaw\.bias; unexpected module\.fc_yaw\.bias"):
        hopenet.load_head_pose(tmp_path / "other.pkl")
    with pytest.raises(UserError, match="LORD_HOPENET_WEIGHTS") as error:
        hopenet.load_head_pose()
    assert hopenet.HOPENET_WEIGHTS.url in str(error.value)


def test_the_head_pose_input_is_that_of_the_authors_transform():
    from lord.evaluation import hopenet

    images = np.random.default_rng(0).integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)
    expected = []
    for image in images:
        array = np.asarray(Image.fromarray(image).resize((224, 224), Image.BILINEAR), dtype=np.float32) / 255
        expected.append(((array - np.array(hopenet.IMAGENET_MEAN)) / np.array(hopenet.IMAGENET_STD)).transpose(2, 0, 1))
    assert np.abs(hopenet.preprocess(images).numpy() - np.stack(expected)).max() < 1e-5


class FakeFaceAlignment:
    """face_alignment's API as the toolkit calls it, on the bright-square stand-in."""

    created = []

    def __init__(self, landmarks_type, network_size=4, device="cuda", flip_input=True, compile=True):
        self.options = {"landmarks_type": landmarks_type, "device": device, "flip_input": flip_input,
                        "compile": compile}
        self.seen = []
        FakeFaceAlignment.created.append(self)

    def get_landmarks_from_image(self, image):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
        self.seen.append(image.copy())
        (points,) = bright_square_landmarks(image[None])
        return None if points is None else [points]


class FakeMTCNN:
    def __init__(self, image_size=160, margin=0, device=None):
        assert (image_size, margin) == (128, 0)

    def __call__(self, images):
        assert isinstance(images, list) and all(isinstance(image, Image.Image) for image in images)
        crops = []
        for image in images:
            array = np.asarray(image.convert("RGB").resize((128, 128)), dtype=np.float32)
            crops.append(None if array.max() <= 127 else (torch.from_numpy(array).permute(2, 0, 1) - 127.5) / 128)
        return crops


class FakeFaceNet(torch.nn.Module):
    offline = False

    def __init__(self, pretrained=None, device=None):
        super().__init__()
        assert pretrained == "vggface2"
        if FakeFaceNet.offline:
            raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    def forward(self, crops):
        return torch.nn.functional.normalize(crops.mean(dim=(2, 3)) + 2, dim=1)


@pytest.fixture
def face_libraries(monkeypatch):
    """Stand-ins for facenet-pytorch and face-alignment, with their APIs."""
    import enum
    import sys
    import types

    aligner = types.ModuleType("face_alignment")
    aligner.LandmarksType = enum.IntEnum("LandmarksType", {"TWO_D": 1, "TWO_HALF_D": 2, "THREE_D": 3})
    aligner.FaceAlignment = FakeFaceAlignment
    facenet = types.ModuleType("facenet_pytorch")
    facenet.MTCNN, facenet.InceptionResnetV1 = FakeMTCNN, FakeFaceNet
    monkeypatch.setitem(sys.modules, "face_alignment", aligner)
    monkeypatch.setitem(sys.modules, "facenet_pytorch", facenet)
    monkeypatch.setattr(FakeFaceAlignment, "created", [])
    monkeypatch.setattr(FakeFaceNet, "offline", False)


@pytest.fixture
def no_face_libraries(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)


@pytest.fixture
def hopenet_file(tmp_path, monkeypatch):
    from test_evaluation_blocks import fake_weights

    path = tmp_path / "hopenet_robust_alpha1.pkl"
    torch.save(fake_weights(hopenet_layout()), path)
    monkeypatch.setenv("LORD_HOPENET_WEIGHTS", str(path))
    return path


def warnings_in(text):
    return [line for line in text.splitlines() if line.startswith("warning:")]


def test_face_networks_without_the_extra_or_their_weights(offline, capsys, monkeypatch, face_libraries, tmp_path):
    import sys

    from lord.evaluation.face import load_face_networks

    networks = load_face_networks(torch.device("cpu"))
    assert networks.landmarks is not None and networks.embeddings is not None and networks.head_poses is None
    assert FakeFaceAlignment.created[0].options == {"landmarks_type": 1, "device": "cpu", "flip_input": False,
                                                   "compile": False}
    (warning,) = warnings_in(capsys.readouterr().err)
    assert warning.startswith("warning: face.head_pose is left null") and "LORD_HOPENET_WEIGHTS" in warning

    monkeypatch.setattr(FakeFaceNet, "offline", True)
    networks = load_face_networks(torch.device("cpu"))
    assert networks.embeddings is None and networks.landmarks is not None
    identity, head_pose = warnings_in(capsys.readouterr().err)
    assert identity.startswith("warning: face.identity is left null: facenet-pytorch could not load its networks")
    assert "Temporary failure in name resolution" in identity and str(tmp_path / "torch-home") in identity

    monkeypatch.setitem(sys.modules, "face_alignment", None)
    assert load_face_networks(torch.device("cpu")) is None
    (warning,) = warnings_in(capsys.readouterr().err)
    assert warning.startswith("warning: face is left null") and "pip install -e .[face-metrics]" in warning


def test_evaluate_leaves_face_null_with_one_warning_without_the_extra(lord_base, offline, fast_classifier,
                                                                      no_face_libraries, run_cli, tmp_path):
    common = ["-bd", lord_base, "--device", "cpu", "evaluate", "-mn", "tiny", "--n-pairs", "8"]
    plain = run_cli(*common, "-dn", "syn", "--output", tmp_path / "plain.json")
    assert plain.code == 0, plain
    assert json.loads((tmp_path / "plain.json").read_text())["face"] is None
    assert not any(line.startswith("warning: face") for line in warnings_in(plain.err))
    asked = run_cli(*common, "-dn", "syn", "--face", "--output", tmp_path / "asked.json")
    assert asked.code == 0, asked
    result = json.loads((tmp_path / "asked.json").read_text())
    assert result["face"] is None and set(result) == set(json.loads((tmp_path / "plain.json").read_text()))
    face_warnings = [line for line in warnings_in(asked.err) if line.startswith("warning: face")]
    assert len(face_warnings) == 1 and "pip install -e .[face-metrics]" in face_warnings[0]
    assert len(warnings_in(asked.err)) == len(warnings_in(plain.err)) + 1

    paths = BaseDir(lord_base)
    syn = store.load(paths.data_path("syn"))
    store.save(paths.data_path("syn-people"),
               store.make_dataset(syn.imgs, syn.classes, syn.contents, n_classes=syn.n_classes, identity=syn.classes))
    people = run_cli(*common, "-dn", "syn-people", "--output", tmp_path / "people.json")
    assert people.code == 0, people
    assert len([line for line in warnings_in(people.err) if "face is left null" in line]) == 1


def test_evaluate_scores_the_face_metrics_on_the_exported_pixels(lord_base, offline, fast_classifier, face_libraries,
                                                                 hopenet_file, run_cli, tmp_path):
    export = tmp_path / "exported"
    cli = run_cli("-bd", lord_base, "--device", "cpu", "evaluate", "-mn", "tiny", "-dn", "syn", "--face",
                  "--n-pairs", "8", "--output", tmp_path / "result.json", "--export", export)
    assert cli.code == 0, cli
    assert not any(line.startswith("warning: face") for line in warnings_in(cli.err))
    assert "face metrics (lower is better): landmarks" in cli.out
    face = json.loads((tmp_path / "result.json").read_text())["face"]
    assert set(face) == {"landmarks", "identity", "head_pose", "n_failed"}
    assert set(face["head_pose"]) == {"yaw", "pitch", "roll"}
    assert isinstance(face["n_failed"], int) and 0 <= face["n_failed"] < 8
    assert face["landmarks"] >= 0 and 0 <= face["identity"] <= 2
    assert all(0 <= angle <= 180 for angle in face["head_pose"].values())

    index = json.loads((export / "index.json").read_text())
    (aligner,) = FakeFaceAlignment.created
    translations = [read_png(export / pair["translation_file"]) for pair in index["pairs"]]
    contents = {pair["content"]: read_png(export / pair["content_file"]) for pair in index["pairs"]}
    seen = aligner.seen
    assert len(seen) == len(contents) + len(translations)
    assert all(np.array_equal(a, b) for a, b in zip(seen[:len(contents)], contents.values()))
    assert all(np.array_equal(a, b) for a, b in zip(seen[len(contents):], translations))
