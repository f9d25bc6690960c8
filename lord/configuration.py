"""Configurations as plain dicts: `--set key.sub=value` overrides and validation.

An override must name an existing key and keep its type (an int may stand for a float); a value is
read as JSON when it parses (numbers, true/false, null, lists) and as a plain string otherwise.
"""

import copy
import difflib
import json
import math

from lord.errors import UserError

POSITIVE_INT_KEYS = ("batch_size", "n_epochs", "_dim", "n_adain_layers", "log_every", "n_samples", "channel_base",
                     "channel_max", "mbstd_group_size", "dim_in", "max_conv_dim")
NON_NEGATIVE_KEYS = ("std", "decay", "weights.", "leaky_relu_slope")
CHOICES = {
    "arch": ("lord", "overlord"),
    "perceptual_loss.type": ("vgg", "l1", "laplacian"),
    "train.embedding_update": ("dense", "rows"),
    "disentanglement.embedding_update": ("dense", "rows"),
    "labeled_attribute": ("classes", "age", "identity", "domain", "gender"),
    "correlation": (None, "pose-invariant", "localized"),
    "runtime.mixed_precision": ("auto", "true", "false"),
}
# Keys that take true, false or the word auto (a choice made per stage and device).
BOOL_OR_AUTO_KEYS = ("runtime.compile",)
ARCH_BLOCKS = {"lord": "train", "overlord": "disentanglement"}  # a block only that architecture's configs have


def flatten(config, prefix=""):
    out = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def parse_value(text):
    try:
        return json.loads(text)
    except ValueError:
        return text


def _coerce(key, old, new):
    if isinstance(new, float) and not math.isfinite(new):
        raise UserError(f"--set {key}: the value must be finite, got {new}")
    if key in BOOL_OR_AUTO_KEYS:
        if not isinstance(new, bool) and new != "auto":
            raise UserError(f"--set {key}: expected true or false (or auto), got {json.dumps(new)}")
        return new
    if old is None or new is None:
        if new is not None and not isinstance(new, (str, int, float)):
            raise UserError(f"--set {key}: expected a string or number, got {json.dumps(new)}")
        return new
    if isinstance(old, bool):
        if not isinstance(new, bool):
            raise UserError(f"--set {key}: expected true or false, got {json.dumps(new)}")
        return new
    if isinstance(old, int):
        if isinstance(new, bool) or not isinstance(new, int):
            raise UserError(f"--set {key}: expected an integer, got {json.dumps(new)}")
        return new
    if isinstance(old, float):
        if isinstance(new, bool) or not isinstance(new, (int, float)):
            raise UserError(f"--set {key}: expected a number, got {json.dumps(new)}")
        return float(new)
    if isinstance(old, str):
        if not isinstance(new, str):
            return json.dumps(new)
        return new
    if isinstance(old, list):
        if not isinstance(new, list):
            raise UserError(f"--set {key}: expected a list such as [1, 2], got {json.dumps(new)}")
        if old:
            return [_coerce(key, old[0], item) for item in new]
        return new
    raise UserError(f"--set {key}: cannot override a value of type {type(old).__name__}")


def apply_overrides(config, overrides, allowed_prefixes=None):
    """A copy of `config` with `KEY=VALUE` overrides applied; unknown keys and wrong types are errors."""
    config = copy.deepcopy(config)
    known = flatten(config)
    for item in overrides or []:
        if "=" not in item:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        if key not in known and any(name.startswith(key + ".") for name in known):
            children = sorted(name for name in known if name.startswith(key + "."))
            raise UserError(f"--set: cannot override the group {key!r} as a whole; set one of {', '.join(children)}")
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UserError(f"--set: unknown config key {key!r}{hint}")
        if allowed_prefixes is not None and not key.startswith(tuple(allowed_prefixes)):
            raise UserError(
                f"--set {key}: only keys under {', '.join(p.rstrip('.') for p in allowed_prefixes)} "
                "can change at this stage"
            )
        value = _coerce(key, known[key], parse_value(text))
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
        known[key] = value
    validate(config)
    return config


def validate(config):
    """Check value ranges that no type check catches."""
    for key, value in flatten(config).items():
        leaf = key.rsplit(".", 1)[-1]
        if key in BOOL_OR_AUTO_KEYS and not isinstance(value, bool) and value != "auto":
            raise UserError(f"config {key} must be true, false or auto, got {json.dumps(value)}")
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and not math.isfinite(value):
            raise UserError(f"config {key} must be finite, got {value}")
        if (leaf in POSITIVE_INT_KEYS or leaf.endswith("_dim")) and isinstance(value, int) and value < 1:
            raise UserError(f"config {key} must be at least 1, got {value}")
        if "learning_rate" in key.split(".")[:-1] and isinstance(value, (int, float)) and value <= 0:
            raise UserError(f"config {key} must be positive, got {value}")
        if any(part in key for part in NON_NEGATIVE_KEYS) and isinstance(value, (int, float)) and value < 0:
            raise UserError(f"config {key} must not be negative, got {value}")
        if leaf == "translated_fraction" and not 0 <= value <= 1:
            raise UserError(f"config {key} must lie in [0, 1], got {value}")
        if leaf == "betas" and (len(value) != 2 or not all(0 <= beta < 1 for beta in value)):
            raise UserError(f"config {key} must be two numbers in [0, 1), got {value}")
        if key in CHOICES and value not in CHOICES[key]:
            choices = ", ".join("null" if choice is None else choice for choice in CHOICES[key])
            raise UserError(f"config {key} must be one of {choices}, got {value!r}")
    arch = config.get("arch", "lord")
    if arch in ARCH_BLOCKS and ARCH_BLOCKS[arch] not in config:
        raise UserError(f"config arch {arch!r} does not fit this configuration: pick a preset of that architecture "
                        "with --config instead of changing arch")
    if arch == "overlord":
        validate_overlord(config)
    return config


def validate_overlord(config):
    """The checks that tie several OverLORD keys together."""
    correlated_dim = config["correlated_dim"]
    if config["correlation"] is not None and (not isinstance(correlated_dim, int) or correlated_dim < 1):
        raise UserError(
            f"config correlation is {config['correlation']!r} but correlated_dim is {json.dumps(correlated_dim)}; "
            "set it, e.g. --set correlated_dim=64"
        )
    augmentation = config["correlation_augmentation"]
    scale = augmentation["scale"]
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise UserError(
            f"config correlation_augmentation.scale must be [low, high] with 0 < low <= high <= 1, got {scale}"
        )
    if not 0 <= augmentation["rotation"] <= 180:
        raise UserError(f"config correlation_augmentation.rotation must lie in [0, 180] degrees, "
                        f"got {augmentation['rotation']}")
    if config["synthesis"]["ema"]["half_life_images"] <= 0:
        raise UserError("config synthesis.ema.half_life_images must be positive")
