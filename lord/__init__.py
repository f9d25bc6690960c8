"""LORD and OverLORD: class/content disentanglement and image translation in PyTorch.

The functions behind every CLI subcommand, usable from Python:

    import lord
    lord.preprocess("runs", "synthetic", None, "shapes", img_size=32, n_classes=10)
    lord.split_samples("runs", "shapes", "shapes-train", "shapes-test", test_split=0.1)
    lord.train("runs", "shapes-train", "model", config)          # config: a dict, e.g. from config.py
    lord.train_encoders("runs", "shapes-train", "model")
    model = lord.load_model("runs", "model")
    grid = model.translate_images(content_images, class_images)  # uint8 arrays in, uint8 out

They are imported on first use, so `import lord` stays light.
"""

import importlib

__version__ = "0.1.0"

_API = {
    "preprocess": "lord.data",
    "split_classes": "lord.data.split",
    "split_samples": "lord.data.split",
    "train": "lord.training",
    "train_encoders": "lord.training",
    "train_synthesis": "lord.training",
    "manipulate": "lord.inference",
    "load_model": "lord.inference",
    "run_demo": "lord.demo",
    "UserError": "lord.errors",
}


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'lord' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
