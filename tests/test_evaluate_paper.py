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

WEIGHT_ENVS = ("LORD_INCEPTION_WEIGHTS", "LORD_LPIPS_WEIGHTS", "LORD_ALEXNET_WEIGHTS", "LORD_VGG16_WEIGHTS",
               "LORD_IMAGENET_INCEPTION_WEIGHTS", "LORD_HOPENET_WEIGHTS")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No feature-network weights anywhere, and no download attempt."""
    for env in WEIGHT_ENVS:
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def no_network(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)


@pytest.fixture
def fast_classifier(monkeypatch):
    from lord.evaluation import classifier

    monkeypatch.setattr(classifier, "EPOCHS", 1)
    monkeypatch.setattr(classifier, "MIN_STEPS", 10)


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
    assert fid_paper.IMAGENET_INCEPTION_WEIGHTS.url in str(error.value) and "could not be downloaded" in str(error.value)
