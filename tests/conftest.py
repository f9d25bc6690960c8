"""Shared fixtures: the CLI run in-process, tiny datasets and tiny configs."""

import importlib.util
import os
import sys
from pathlib import Path

# The tests start processes side by side (servers, a browser, torchrun ranks): their idle OpenMP threads
# sleep instead of spinning, so that they do not stall one another on a small machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# Tiny test models run fastest on one thread, and OpenMP threads stall when a machine is oversubscribed.
torch.set_num_threads(1)
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def load_cli():
    """lord.py as a module (the name `lord` belongs to the package)."""
    spec = importlib.util.spec_from_file_location("lord_cli", REPO / "lord.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLI = load_cli()


def visible_lines(text):
    """The lines a terminal would show: progress bars rewrite themselves with carriage returns."""
    lines = (line.rsplit("\r", 1)[-1] for line in text.split("\n"))
    return [line for line in lines if line.strip()]


class CliResult:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err

    @property
    def err_lines(self):
        return visible_lines(self.err)

    def __repr__(self):
        return f"CliResult(code={self.code}, out={self.out[-500:]!r}, err={self.err[-500:]!r})"


@pytest.fixture
def run_cli(capsys):
    """Run `python lord.py ARGS` in this process; returns its exit code and output."""

    def run(*args):
        capsys.readouterr()
        try:
            code = CLI.main([str(arg) for arg in args])
        except SystemExit as exit_:
            code = exit_.code
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


def tiny_config(changes=None):
    """lord-tiny, shrunk further so a test trains in seconds; `changes` maps dotted keys to values."""
    import config
    from lord.configuration import apply_overrides

    base = config.get_config("lord-tiny")
    overrides = ["adain_dim=16", "final_conv_dim=8", "content_dim=8", "class_dim=8",
                 "encoder.channels=[8, 8, 8, 8, 8]", "encoder.fc_dim=16", "runtime.n_samples=4",
                 "runtime.log_every=1"]
    overrides += [f"{key}={value}" for key, value in (changes or {}).items()]
    return apply_overrides(base, overrides)


TINY_SETS = [
    "adain_dim=16", "final_conv_dim=8", "content_dim=8", "class_dim=8", "encoder.channels=[8,8,8,8,8]",
    "encoder.fc_dim=16", "runtime.n_samples=4", "runtime.log_every=5", "train.batch_size=32",
    "train_encoders.batch_size=32",
]


def set_args(*extra):
    """`--set` arguments shrinking lord-tiny for tests, plus `extra` KEY=VALUE strings."""
    args = []
    for item in list(TINY_SETS) + list(extra):
        args += ["--set", item]
    return args


@pytest.fixture(scope="session")
def synthetic_base(tmp_path_factory):
    """A base dir holding `syn`: the synthetic set at 16 px with 3 classes (1296 images)."""
    base = tmp_path_factory.mktemp("synthetic-base")
    code = CLI.main(["-bd", str(base), "-q", "preprocess", "-di", "synthetic", "-dn", "syn", "--img-size", "16",
                     "--n-classes", "3"])
    assert code == 0
    return base


@pytest.fixture
def base_with_data(synthetic_base, tmp_path):
    """A fresh base dir with a copy of the small synthetic set."""
    import shutil

    target = tmp_path / "base"
    shutil.copytree(synthetic_base, target)
    return target


OVERLORD_PRESETS = {
    "none": "overlord-tiny", "pose-invariant": "overlord-tiny-pose", "localized": "overlord-tiny-localized",
}
OVERLORD_TINY_SETS = [
    "label_dim=8", "uncorrelated_dim=8", "generator.channel_base=256", "generator.channel_max=16",
    "encoder.dim_in=8", "encoder.max_conv_dim=16", "discriminator.channel_base=256",
    "discriminator.channel_max=16", "disentanglement.batch_size=16", "disentanglement.n_epochs=2",
    "amortization.batch_size=16", "amortization.n_epochs=2", "synthesis.batch_size=8", "synthesis.n_epochs=1",
    "synthesis.ema.half_life_images=50", "runtime.n_samples=4", "runtime.log_every=2",
]


def overlord_set_args(correlation="none", *extra):
    """`--set` arguments shrinking an OverLORD CPU preset for tests, plus `extra` KEY=VALUE strings."""
    items = list(OVERLORD_TINY_SETS) + (["correlated_dim=4"] if correlation != "none" else []) + list(extra)
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="session")
def synthetic32_base(tmp_path_factory):
    """A base dir holding `syn32`: 96 images of the 32 px synthetic set, 2 classes, with masks."""
    from lord.assets import BaseDir
    from lord.data import store

    base = tmp_path_factory.mktemp("synthetic32-base")
    code = CLI.main(["-bd", str(base), "-q", "preprocess", "-di", "synthetic", "-dn", "full32", "--img-size", "32",
                     "--n-classes", "2"])
    assert code == 0
    paths = BaseDir(base)
    full = store.load(paths.data_path("full32"))
    store.save(paths.data_path("syn32"), full.subset(np.arange(0, len(full), 9)))
    paths.data_path("full32").unlink()
    return base


@pytest.fixture(scope="session")
def overlord_models(synthetic32_base, tmp_path_factory):
    """A base dir with one OverLORD model per correlation mode (named after it), all three stages trained."""
    import shutil

    base = tmp_path_factory.mktemp("overlord-models")
    shutil.copytree(synthetic32_base, base, dirs_exist_ok=True)
    for correlation, preset in OVERLORD_PRESETS.items():
        common = ["-bd", str(base), "-q", "--device", "cpu"]
        assert CLI.main([*common, "train", "-dn", "syn32", "-mn", correlation, "-cf", preset,
                         *overlord_set_args(correlation)]) == 0
        assert CLI.main([*common, "train-encoders", "-dn", "syn32", "-mn", correlation]) == 0
        assert CLI.main([*common, "train-synthesis", "-dn", "syn32", "-mn", correlation]) == 0
    return base


# Every weight file the evaluation looks for through an environment variable.
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
    """A few classifier steps: enough for the JSON shape, which does not look at its accuracy."""
    from lord.evaluation import classifier

    monkeypatch.setattr(classifier, "EPOCHS", 1)
    monkeypatch.setattr(classifier, "MIN_STEPS", 10)


@pytest.fixture(scope="session")
def serve_base(synthetic_base, tmp_path_factory):
    """A base dir for the web page: `lord` (both stages, trained on `named`: the 16 px synthetic set with
    class names added) and `latent-only` (stage 1 only), and image files to upload."""
    import shutil

    from lord.assets import BaseDir
    from lord.data import store
    from PIL import Image

    base = tmp_path_factory.mktemp("serve-base")
    shutil.copytree(synthetic_base, base, dirs_exist_ok=True)
    paths = BaseDir(base)
    data = store.load(paths.data_path("syn"))
    data.extras["class_names"] = np.asarray(["alpha", "beta", "gamma"])
    store.save(paths.data_path("named"), data)
    common = ["-bd", str(base), "-q", "--device", "cpu"]
    for name in ("lord", "latent-only"):
        assert CLI.main([*common, "train", "-dn", "named", "-mn", name, "-cf", "lord-tiny",
                         *set_args("train.n_epochs=1")]) == 0
    assert CLI.main([*common, "train-encoders", "-dn", "named", "-mn", "lord",
                     "--set", "train_encoders.n_epochs=1"]) == 0
    uploads = base / "uploads"
    uploads.mkdir()
    first, other = int(np.flatnonzero(data.classes == 0)[0]), int(np.flatnonzero(data.classes == 1)[0])
    wide = np.kron(data.imgs[first], np.ones((3, 4, 1), dtype=np.uint8))
    Image.fromarray(np.dstack([wide, np.full(wide.shape[:2], 200, np.uint8)])).save(uploads / "wide.png")
    Image.fromarray(data.imgs[other]).save(uploads / "reference.png")
    Image.fromarray(data.imgs[first].mean(axis=-1).astype(np.uint8)).save(uploads / "gray.jpg")
    (uploads / "notes.txt").write_text("not an image")
    return base
