"""Finding and checking the public pretrained weight files: VGG16 for the perceptual loss, and the
feature networks of the evaluation (FID Inception, LPIPS).

A file is looked for at an explicit path, else at the path in an environment variable (a directory
is searched for the official file name), else in torch.hub's cache, downloading it there when
allowed with torch.hub's hash check. Metrics computed with random weights would look plausible and
mean nothing, so when no source works a UserError says where the file is published and how to hand
it over. Loaded files are matched against the network key by key and shape by shape.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from lord.errors import UserError

MAX_LISTED = 5


@dataclass(frozen=True)
class WeightFile:
    """A published weight file: what it is, where it lives, and how a user can provide it."""

    description: str
    url: str
    file_name: str
    env: str
    hub_file_name: str = ""

    @property
    def cache_name(self):
        """The name in torch.hub's cache; its '-<hex>.' part is the sha256 prefix torch.hub checks."""
        return self.hub_file_name or self.file_name

    def cache_path(self):
        return Path(torch.hub.get_dir()) / "checkpoints" / self.cache_name

    def how_to_provide(self):
        return (
            f"download {self.url} (on a machine with internet) and set {self.env}=/path/to/{self.file_name} "
            f"or pass its path, or put it in torch.hub's cache as {self.cache_path()}"
        )


def load_weight_file(weight_file, path=None, download=True, hint=""):
    """(state dict, where it came from) of `weight_file`: from `path`, else ${env}, else torch.hub's
    cache, else a download into that cache. `hint` ends every error message (other ways out)."""
    for source, candidate in (("the given path", path), (f"${weight_file.env}", os.environ.get(weight_file.env))):
        if not candidate:
            continue
        candidate = Path(candidate).expanduser()
        if candidate.is_dir():
            candidate = candidate / weight_file.file_name
        if not candidate.is_file():
            raise UserError(
                f"{weight_file.description}: {source} names {candidate}, which does not exist; "
                + weight_file.how_to_provide() + hint
            )
        return read_state_dict(candidate, weight_file.description), str(candidate)
    cached = weight_file.cache_path()
    if cached.is_file():
        return read_state_dict(cached, weight_file.description), str(cached)
    if not download:
        raise UserError(f"{weight_file.description} not found (no path given, ${weight_file.env} unset, "
                        f"not in torch.hub's cache); " + weight_file.how_to_provide() + hint)
    try:
        state = torch.hub.load_state_dict_from_url(
            weight_file.url, map_location="cpu", progress=False, check_hash=True,
            file_name=weight_file.cache_name, weights_only=True,
        )
    except Exception as error:  # offline, a proxy, a hash mismatch or a corrupt download
        raise UserError(
            f"{weight_file.description} could not be downloaded ({type(error).__name__}: {error}); "
            + weight_file.how_to_provide() + hint
        ) from None
    return _as_state_dict(state, weight_file.url, weight_file.description), str(cached)


def read_state_dict(path, description):
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # not a torch file, truncated, or pickled objects
        raise UserError(f"cannot read {description} from {path}: {error}") from None
    return _as_state_dict(state, path, description)


def _as_state_dict(state, origin, description):
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise UserError(f"{origin} is not a state dict of tensors, so it does not hold {description}")
    return dict(state)


def _listed(items):
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def load_checked(module, state, description, origin):
    """Load `state` into `module` after checking that keys and shapes match exactly.

    BatchNorm's `num_batches_tracked` counters may be absent (files converted from other frameworks
    lack them); they play no part in evaluation.
    """
    expected = module.state_dict()
    state = dict(state)
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong = [
        f"{key} {tuple(state[key].shape)} instead of {tuple(expected[key].shape)}"
        for key in expected if key in state and state[key].shape != expected[key].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listed(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {_listed(wrong)}")
    if problems:
        raise UserError(f"{origin} does not hold {description} ({'; '.join(problems)})")
    module.load_state_dict(state, strict=True)
    return module


VGG16_WEIGHTS = WeightFile(
    description="the torchvision VGG16 ImageNet weights",
    url="https://download.pytorch.org/models/vgg16-397923af.pth",
    file_name="vgg16-397923af.pth",
    env="LORD_VGG16_WEIGHTS",
)
PERCEPTUAL_HINT = (
    "; or give its path with --set perceptual_loss.weights=PATH, or train with a plain pixel loss: "
    "--set perceptual_loss.type=l1"
)


def reconstruction_loss(perceptual_config, download=True):
    """The loss module a config's `perceptual_loss` block asks for, with its pretrained weights."""
    from lord.networks.vgg import PerceptualLoss, PixelLoss

    if perceptual_config["type"] == "l1":
        return PixelLoss()
    if perceptual_config["type"] == "laplacian":
        from lord.networks.pyramid import LaplacianLoss

        return LaplacianLoss()
    state, origin = load_weight_file(VGG16_WEIGHTS, perceptual_config.get("weights"), download, PERCEPTUAL_HINT)
    # Models trained before `normalize` was a key always normalised.
    return PerceptualLoss(perceptual_config["layers"], state, origin, normalize=perceptual_config.get("normalize", True))
