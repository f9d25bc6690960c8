"""import-model: the published code's model directories open here and translate to its pixels.

The directories are rebuilt from seeds in the published format (tests/original_format.py); the
expected pixels in tests/data/original/ were computed once by the published code itself (lord-pytorch's
`AmortizedModel.convert`, OverLORD's `manipulate_by_reference` and `manipulate_by_labels`) from the
same directories and input images.
"""

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import original_format as original
from lord.assets import BaseDir
from lord.data import store
from lord.data.store import Dataset

from lord.model import load_tensors, read_config, weights_path

DATA = Path(__file__).parent / "data" / "original"
OVERLORD_CASES = {"overlord-none": (None, 11), "overlord-pose-invariant": ("pose-invariant", 12),
                  "overlord-localized": ("localized", 13)}


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def files(directory):
    return sorted(str(path.relative_to(directory)) for path in Path(directory).rglob("*")) if directory.exists() else []


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """Original-format model directories, one per case."""
    root = tmp_path_factory.mktemp("originals")
    for name, (correlation, seed) in OVERLORD_CASES.items():
        config = original.overlord_config(correlation=correlation)
        original.write_original_dir(root / name, config, *original.overlord_states(config, seed))
    config = original.lord_pytorch_config()
    original.write_original_dir(root / "lord-pytorch", config, *original.lord_pytorch_states(config, 21))
    original.write_original_dir(root / "lord-pytorch-dp", config,
                                *original.lord_pytorch_states(config, 21, data_parallel=True))
    return root


@pytest.fixture(scope="module")
def imported(originals, tmp_path_factory):
    """A base directory with every original imported under its case name."""
    from conftest import CLI

    base = tmp_path_factory.mktemp("imported")
    for path in sorted(originals.iterdir()):
        assert CLI.main(["-bd", str(base), "-q", "import-model", "-i", str(path), "-mn", path.name]) == 0
    return base


@pytest.mark.parametrize("name", sorted(OVERLORD_CASES))
def test_overlord_translation_by_reference_is_the_originals(imported, run_cli, tmp_path, name):
    out = tmp_path / "out.png"
    result = run_cli("-bd", imported, "-q", "--device", "cpu", "manipulate", "-mn", name,
                     "--img", DATA / "inputs" / "a-32.png", "--reference", DATA / "inputs" / "b-32.png",
                     "--output", out)
    assert result.code == 0, result
    expected = pixels(DATA / name / "by_reference.png")
    assert expected.std() > 10
    assert np.abs(pixels(out) - expected).max() <= 2


def test_overlord_strip_over_labels_is_the_originals(imported, run_cli, tmp_path):
    out = tmp_path / "strip.png"
    result = run_cli("-bd", imported, "-q", "--device", "cpu", "manipulate", "-mn", "overlord-none",
                     "-i", DATA / "inputs" / "a-32.png", "-o", out)
    assert result.code == 0, result
    expected = pixels(DATA / "overlord-none" / "by_labels.png")
    assert expected.shape == (32, 32 * 4, 3)
    assert np.abs(pixels(out) - expected).max() <= 2


@pytest.mark.parametrize("name", ["lord-pytorch", "lord-pytorch-dp"])
def test_lord_pytorch_conversion_is_the_originals(imported, run_cli, tmp_path, name):
    out = tmp_path / "out.png"
    result = run_cli("-bd", imported, "-q", "--device", "cpu", "manipulate", "-mn", name,
                     "-i", DATA / "inputs" / "a-64.png", "-r", DATA / "inputs" / "b-64.png", "-o", out)
    assert result.code == 0, result
    assert np.abs(pixels(out) - pixels(DATA / "lord-pytorch" / "convert.png")).max() <= 2


def test_imported_configs_carry_the_original_settings(imported):
    lord = read_config(BaseDir(imported).model_dir("lord-pytorch"))
    assert lord["arch"] == "lord" and lord["imported"]["format"] == "lord-pytorch"
    assert (lord["content_dim"], lord["class_dim"], lord["adain_dim"], lord["n_adain_layers"]) == (16, 12, 32, 4)
    assert lord["leaky_relu_slope"] == 0.01 and lord["perceptual_loss"]["normalize"] is False
    assert lord["data"] == {"name": None, "img_shape": [64, 64, 3], "n_classes": 4, "n_images": 12,
                            "fingerprint": None}
    overlord = read_config(BaseDir(imported).model_dir("overlord-localized"))
    assert overlord["arch"] == "overlord" and overlord["correlation"] == "localized"
    assert (overlord["label_dim"], overlord["correlated_dim"], overlord["uncorrelated_dim"]) == (16, 8, 12)
    assert overlord["correlation_augmentation"] == {"scale": [0.8, 1.0], "flip": True, "rotation": 0.0}
    assert overlord["disentanglement"]["loss_weights"]["uncorrelated_decay"] == 0.1
    assert overlord["synthesis"]["ema"]["enabled"] is False and overlord["data"]["n_labels"] == 3
    model_dir = BaseDir(imported).model_dir("overlord-none")
    assert sorted(path.name for path in model_dir.iterdir()) == ["amortized.pt", "config.json", "latent.pt"]
    amortized = load_tensors(weights_path(model_dir, "amortized"))
    assert any(key.startswith("discriminator.") for key in amortized)
    assert not any(".module." in key or key.endswith(".kernel") for key in amortized)


def overlord_data(base, name, n_images, n_labels):
    """Preprocessed data of the imported OverLORD models' shape: 32 px, a `domain` label."""
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (n_images, 32, 32, 3), dtype=np.uint8)
    domain = np.arange(n_images) % n_labels
    store.save(BaseDir(base).data_path(name), Dataset(imgs, domain, np.zeros(n_images, dtype=np.int64), n_labels,
                                                     extras={"domain": domain}))


def test_synthesis_continues_from_an_imported_overlord_model(imported, run_cli, tmp_path, monkeypatch):
    from test_vgg import fake_vgg16_file

    base = tmp_path / "base"
    shutil.copytree(BaseDir(imported).model_dir("overlord-none"), BaseDir(base).model_dir("m"))
    overlord_data(base, "faces", 2, 2)
    fake_vgg16_file(tmp_path / "vgg.pth", up_to=30)
    monkeypatch.setenv("LORD_VGG16_WEIGHTS", str(tmp_path / "vgg.pth"))
    result = run_cli("-bd", base, "-q", "--device", "cpu", "train-synthesis", "-dn", "faces", "-mn", "m",
                     "--set", "synthesis.batch_size=2", "--set", "synthesis.n_epochs=1", "--set", "runtime.n_samples=2")
    assert result.code == 0, result
    model_dir = BaseDir(base).model_dir("m")
    tuned = load_tensors(weights_path(model_dir, "synthesis"))
    start = load_tensors(weights_path(model_dir, "amortized"))
    assert not torch.equal(tuned["discriminator.final_linear.1.weight"], start["discriminator.final_linear.1.weight"])
    other = tmp_path / "other"
    overlord_data(other, "faces", 3, 3)
    result = run_cli("-bd", other, "train-encoders", "-dn", "faces", "-mn", "m")
    assert result.code != 0


def test_pickle_payload_runs_nothing(originals, run_cli, tmp_path):
    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    directory = tmp_path / "evil"
    shutil.copytree(originals / "lord-pytorch", directory)
    config = original.lord_pytorch_config()
    config["content_std"] = Payload()
    (directory / "config.pkl").write_bytes(pickle.dumps(config))
    result = run_cli("-bd", tmp_path / "base", "import-model", "-i", directory, "-mn", "m")
    assert result.code != 0 and len(result.err_lines) == 1 and "config.pkl" in result.err
    assert not (tmp_path / "pwned").exists()
    assert files(tmp_path / "base") == []


def break_shape(directory):
    state = torch.load(directory / "amortized.pth", weights_only=True)
    key = next(key for key in state if key.endswith("class_encoder.fc_layers.4.weight"))
    state[key] = state[key][:, :10]
    torch.save(state, directory / "amortized.pth")


def add_config_key(directory):
    with open(directory / "config.pkl", "rb") as file:
        config = pickle.load(file)
    config["train"]["warmup_epochs"] = 5
    (directory / "config.pkl").write_bytes(pickle.dumps(config))


def numpy_in_config(directory):
    with open(directory / "config.pkl", "rb") as file:
        config = pickle.load(file)
    config["n_classes"] = np.int64(4)
    (directory / "config.pkl").write_bytes(pickle.dumps(config))


@pytest.mark.parametrize("damage, message", [
    (lambda directory: (directory / "latent.pth").unlink(), "latent.pth"),
    (lambda directory: (directory / "config.pkl").unlink(), "config.pkl"),
    (break_shape, "shape mismatch class_encoder.fc_layers.4.weight"),
    (add_config_key, "train.warmup_epochs"),
    (numpy_in_config, "numpy"),
    (lambda directory: (directory / "config.pkl").write_bytes(pickle.dumps({"a": 1})), "neither"),
    (lambda directory: (directory / "amortized.pth").write_bytes(b"not a torch file"), "amortized.pth"),
])
def test_broken_directories_are_one_line_errors_and_write_nothing(originals, run_cli, tmp_path, damage, message):
    directory = tmp_path / "model"
    shutil.copytree(originals / "lord-pytorch", directory)
    damage(directory)
    result = run_cli("-bd", tmp_path / "base", "import-model", "-i", directory, "-mn", "m")
    assert result.code != 0 and len(result.err_lines) == 1 and message in result.err, result
    assert "Traceback" not in result.err
    assert files(tmp_path / "base") == []


def test_an_existing_model_needs_overwrite(originals, run_cli, tmp_path):
    base = tmp_path / "base"
    assert run_cli("-bd", base, "-q", "import-model", "-i", originals / "lord-pytorch", "-mn", "m").code == 0
    config_path = BaseDir(base).model_dir("m") / "config.json"
    before = config_path.read_bytes()
    result = run_cli("-bd", base, "import-model", "-i", originals / "overlord-none", "-mn", "m")
    assert result.code != 0 and "--overwrite" in result.err and config_path.read_bytes() == before
    assert run_cli("-bd", base, "-q", "import-model", "-i", originals / "overlord-none", "-mn", "m",
                   "--overwrite").code == 0
    assert json.loads(config_path.read_text())["arch"] == "overlord"
