"""The Python API shown in the README, on tiny sizes."""

import numpy as np

import config
import lord
from conftest import TINY_SETS


def test_python_api_runs_the_pipeline(tmp_path):
    base = tmp_path / "runs"
    lord.preprocess(base, "synthetic", None, "shapes", img_size=16, n_classes=2, quiet=True)
    lord.split_samples(base, "shapes", "shapes-train", "shapes-test", test_split=0.1, quiet=True)
    overrides = TINY_SETS + ["train.n_epochs=1", "train_encoders.n_epochs=1"]
    lord.train(base, "shapes-train", "model", config.get_config("lord-tiny"), overrides=overrides, quiet=True)
    lord.train_encoders(base, "shapes-train", "model", quiet=True)
    model = lord.load_model(base, "model")
    images = (np.random.default_rng(0).random((3, 20, 24, 3)) * 255).astype(np.uint8)  # any size: cropped, resized
    grid = model.translate_images(images[:2], images)
    assert grid.shape == (3, 2, 16, 16, 3) and grid.dtype == np.uint8
    assert isinstance(lord.UserError("x"), Exception)
