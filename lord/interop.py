"""Model directories written by the authors' code, read into toolkit model directories (`import-model`).

The published LORD (lord-pytorch's `Lord.save`) and OverLORD (`Model.save`) write `config.pkl` (a
pickled dict), `latent.pth` (stage 1) and, once stage 2 ran, `amortized.pth` (state dicts, with
`module.` in the keys where DataParallel wrapped a module). OverLORD saves its encoders, generator and
discriminator to `amortized.pth` through stages 2 and 3, so that file is imported as the toolkit's
stage 2 (`amortized`); `train-synthesis` continues from it as the original's stage 3 would.

The pickle is read with an unpickler that builds plain values only: anything that would import or
call code is refused. Weight files are read with `weights_only=True`. Every key, shape and config value
is checked before anything is written.
"""

import contextlib
import copy
import io
import pickle
from pathlib import Path

import torch

from lord import configuration
from lord.assets import BaseDir, ModelLock, atomic_write_json, clear_model, save_torch
from lord.errors import UserError
from lord.model import load_state_checked, load_tensors, stage_module_class, weights_path
from lord.networks.stylegan import blur_kernel

PLAIN_SCALARS = (str, int, float, bool, type(None))
FORMATS = ("lord-pytorch", "overlord")


class PlainUnpickler(pickle.Unpickler):
    """Builds dicts, lists, tuples, strings, numbers, booleans and None; refuses every global."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"it refers to {module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("it refers to a persistent object")


def check_plain(value, path):
    if isinstance(value, dict):
        children = [*value.keys(), *value.values()]
    elif isinstance(value, (list, tuple)):
        children = value
    elif isinstance(value, PLAIN_SCALARS):
        return
    else:
        raise UserError(f"{path}: holds a {type(value).__name__}; only plain values (dicts, lists, numbers, "
                        "strings) are read")
    for child in children:
        check_plain(child, path)


def read_config_pickle(path):
    """The dict in an original `config.pkl`, read without running anything."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"missing {path}: not a model directory of lord-pytorch or OverLORD") from None
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    try:
        config = PlainUnpickler(io.BytesIO(data)).load()
    except Exception as error:  # refused globals, truncated or foreign files
        raise UserError(f"{path}: not read ({error}); only a pickle of plain values is accepted") from None
    check_plain(config, path)
    if not isinstance(config, dict):
        raise UserError(f"{path}: holds a {type(config).__name__}, not a config dict")
    return config


def detect_format(config, path):
    if "labeled_attribute" in config and "disentanglement" in config:
        return "overlord"
    if "content_dim" in config and "n_adain_layers" in config:
        return "lord-pytorch"
    raise UserError(f"{path}: neither a lord-pytorch config (content_dim, n_adain_layers, ...) nor an OverLORD "
                    "config (labeled_attribute, disentanglement, ...)")


def flat_keys(config, prefix=""):
    keys = set()
    for key, value in config.items():
        if isinstance(value, dict):
            keys |= flat_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


class OriginalConfig:
    """Typed access to an original config, with errors that name the file and the key."""

    def __init__(self, config, path, known, ignored=()):
        self.config = config
        self.path = path
        unknown = sorted(flat_keys(config) - set(known) - set(ignored))
        if unknown:
            raise UserError(f"{path}: keys the toolkit cannot express: {', '.join(unknown)}")

    def get(self, key, kind, required=True):
        node = self.config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                if required:
                    raise UserError(f"{self.path}: missing key {key}")
                return None
            node = node[part]
        ok = {
            "int": isinstance(node, int) and not isinstance(node, bool) and node > 0,
            "number": isinstance(node, (int, float)) and not isinstance(node, bool) and node >= 0,
            "bool": isinstance(node, bool),
            "str": isinstance(node, str),
            "optional_str": node is None or isinstance(node, str),
            "numbers": isinstance(node, (list, tuple)) and all(
                isinstance(item, (int, float)) and not isinstance(item, bool) for item in node),
        }[kind]
        if not ok:
            raise UserError(f"{self.path}: {key} is {node!r}, the toolkit cannot express it (expected {kind})")
        return list(node) if kind == "numbers" else node

    def img_shape(self):
        shape = self.get("img_shape", "numbers")
        if len(shape) != 3 or not all(isinstance(side, int) and side > 0 for side in shape):
            raise UserError(f"{self.path}: img_shape is {shape}, expected (height, width, channels)")
        return shape


# -- lord-pytorch ------------------------------------------------------------------------------------

LORD_KEYS = (
    "img_shape", "n_imgs", "n_classes", "content_dim", "class_dim", "content_std", "content_decay", "n_adain_layers",
    "adain_dim", "perceptual_loss.layers", "train.batch_size", "train.n_epochs", "train.learning_rate.generator",
    "train.learning_rate.latent", "train.learning_rate.min", "train_encoders.batch_size", "train_encoders.n_epochs",
    "train_encoders.learning_rate.max", "train_encoders.learning_rate.min",
)


def lord_config(original, base):
    """The toolkit config of a lord-pytorch model; `base` is the `lord` preset (the published networks'
    fixed widths and everything the original config does not set)."""
    config = copy.deepcopy(base)
    for key in ("content_dim", "class_dim", "n_adain_layers", "adain_dim"):
        config[key] = original.get(key, "int")
    config["content_std"] = float(original.get("content_std", "number"))
    config["content_decay"] = float(original.get("content_decay", "number"))
    config["perceptual_loss"]["layers"] = [int(layer) for layer in original.get("perceptual_loss.layers", "numbers")]
    for block, rates in (("train", ("generator", "latent", "min")), ("train_encoders", ("max", "min"))):
        config[block]["batch_size"] = original.get(f"{block}.batch_size", "int")
        config[block]["n_epochs"] = original.get(f"{block}.n_epochs", "int")
        config[block]["learning_rate"] = {
            rate: float(original.get(f"{block}.learning_rate.{rate}", "number")) for rate in rates
        }
    img_shape = original.img_shape()
    config["data"] = {"name": None, "img_shape": img_shape, "n_classes": original.get("n_classes", "int"),
                      "n_images": original.get("n_imgs", "int"), "fingerprint": None}
    return config


def lord_state(state):
    """lord-pytorch's LatentModel / AmortizedModel keys -> the toolkit's (encoders keep theirs)."""
    out = lord_generator_state(state)
    for key, value in state.items():
        if key == "content_embedding.embedding.weight":
            out["content_embedding.weight"] = value
        elif not key.startswith(("modulation.", "generator.")):
            out[key] = value
    return out


def lord_generator_state(state):
    """The generator's keys: one modulation map per AdaIN layer stacked into the toolkit's single map
    (the same outputs in the same order), and the AdaIN convolutions out of their Sequential."""
    out = {}
    layers = sorted({int(key.split(".")[2]) for key in state if key.startswith("modulation.adain_per_layer.")})
    if layers:
        if layers != list(range(len(layers))):
            raise UserError(f"modulation layers {layers} are not numbered 0..{len(layers) - 1}")
        for name in ("weight", "bias"):
            parts = [state.get(f"modulation.adain_per_layer.{layer}.{name}") for layer in layers]
            if any(part is None for part in parts):
                raise UserError(f"a modulation layer lacks its {name}")
            out[f"generator.modulation.linear.{name}"] = torch.cat(parts, dim=0)
    for key, value in state.items():
        if not key.startswith("generator."):
            continue
        parts = key.split(".")
        if parts[1] == "adain_conv_layers" and parts[2].isdigit() and int(parts[2]) % 4 == 1:
            out[f"generator.upsample_convs.{int(parts[2]) // 4}.{parts[3]}"] = value
        elif parts[1] == "last_conv_layers":
            out[f"generator.last_convs.{'.'.join(parts[2:])}"] = value
        else:
            out[key] = value
    return out


# -- OverLORD ----------------------------------------------------------------------------------------

OVERLORD_KEYS = (
    "img_shape", "n_imgs", "n_labels", "labeled_attribute", "correlation", "label_dim", "correlated_dim",
    "uncorrelated_dim", "uncorrelated_std", "correlation_augmentation.scale", "correlation_augmentation.rotation",
    "correlation_augmentation.flip_horizontal", "disentanglement.batch_size", "disentanglement.n_epochs",
    "disentanglement.learning_rate.latent", "disentanglement.learning_rate.encoder",
    "disentanglement.learning_rate.generator", "disentanglement.learning_rate.min",
    "disentanglement.loss_weights.reconstruction", "disentanglement.loss_weights.uncorrelated_decay",
    "amortization.batch_size", "amortization.n_epochs", "amortization.learning_rate.max",
    "amortization.learning_rate.min", "synthesis.batch_size", "synthesis.n_epochs",
    "synthesis.learning_rate.generator", "synthesis.learning_rate.discriminator",
    "synthesis.loss_weights.reconstruction", "synthesis.loss_weights.latent", "synthesis.loss_weights.adversarial",
    "perceptual_loss.layers", "perceptual_loss.normalize",
)
# How often the original drew its TensorBoard grids; the toolkit draws one every epoch.
OVERLORD_IGNORED = tuple(f"{stage}.n_epochs_between_visualizations"
                         for stage in ("disentanglement", "amortization", "synthesis"))


def overlord_config(original, base):
    """The toolkit config of an OverLORD model; `base` is the OverLORD paper preset (the published
    networks' fixed widths and everything the original config does not set)."""
    config = copy.deepcopy(base)
    config["labeled_attribute"] = original.get("labeled_attribute", "str")
    config["correlation"] = original.get("correlation", "optional_str")
    for key in ("label_dim", "uncorrelated_dim"):
        config[key] = original.get(key, "int")
    config["uncorrelated_std"] = float(original.get("uncorrelated_std", "number"))
    if config["correlation"] is not None:
        config["correlated_dim"] = original.get("correlated_dim", "int")
        augmentation = config["correlation_augmentation"]
        augmentation["scale"] = [float(value) for value in original.get("correlation_augmentation.scale", "numbers")]
        augmentation["rotation"] = float(original.get("correlation_augmentation.rotation", "number"))
        augmentation["flip"] = original.get("correlation_augmentation.flip_horizontal", "bool")
    rates = {"disentanglement": ("latent", "generator", "min"), "amortization": ("max", "min"),
             "synthesis": ("generator", "discriminator")}
    for block, names in rates.items():
        config[block]["batch_size"] = original.get(f"{block}.batch_size", "int")
        config[block]["n_epochs"] = original.get(f"{block}.n_epochs", "int")
        config[block]["learning_rate"] = {name: float(original.get(f"{block}.learning_rate.{name}", "number"))
                                          for name in names}
    encoder_rate = original.get("disentanglement.learning_rate.encoder", "number", required=False)
    config["disentanglement"]["learning_rate"]["encoder"] = float(
        base["disentanglement"]["learning_rate"]["encoder"] if encoder_rate is None else encoder_rate)
    for block, names in (("disentanglement", ("reconstruction", "uncorrelated_decay")),
                         ("synthesis", ("reconstruction", "latent", "adversarial"))):
        for name in names:
            config[block]["loss_weights"][name] = float(original.get(f"{block}.loss_weights.{name}", "number"))
    config["perceptual_loss"]["layers"] = [int(layer) for layer in original.get("perceptual_loss.layers", "numbers")]
    config["perceptual_loss"]["normalize"] = original.get("perceptual_loss.normalize", "bool")
    img_shape = original.img_shape()
    n_labels = original.get("n_labels", "int")
    config["data"] = {"name": None, "img_shape": img_shape, "n_classes": n_labels, "n_labels": n_labels,
                      "n_images": original.get("n_imgs", "int"), "fingerprint": None}
    return config


def stylegan_state(state, origin):
    """The original's StyleGAN2 layers as the toolkit keeps them: modulated weights without their
    leading axis of 1; the fixed blur filters, stored as buffers, checked and dropped (the toolkit
    builds them; a file with other filters computes something the toolkit does not)."""
    out = {}
    for key, value in state.items():
        if key.endswith(".conv.weight") and value.dim() == 5 and value.shape[0] == 1:
            out[key] = value[0]
            continue
        if not key.endswith(".kernel"):
            out[key] = value
            continue
        gain = 1.0 if key.startswith("discriminator.") else 4.0
        if value.shape != (4, 4) or not torch.allclose(value.float(), blur_kernel(gain), atol=1e-6):
            raise UserError(f"{origin}: {key} is not StyleGAN2's [1, 3, 3, 1] blur filter; the toolkit cannot "
                            "express it")
    return out


# -- reading and writing -----------------------------------------------------------------------------


def strip_data_parallel(state):
    """Keys as without DataParallel: `a.module.b` -> `a.b`, `module.a` -> `a`."""
    out = {}
    for key, value in state.items():
        parts = [part for part in key.split(".") if part != "module"]
        out[".".join(parts)] = value
    return out


def read_original_weights(path):
    state = load_tensors(path, "weights")
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise UserError(f"{path} is not a state dict of tensors")
    return strip_data_parallel(state)


def convert(input_dir, presets):
    """(format, toolkit config, {stage: state dict}, notes) of an original model directory, all checked.
    `presets` maps each format to its base preset."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise UserError(f"no model directory {input_dir}")
    config_path = input_dir / "config.pkl"
    original = read_config_pickle(config_path)
    kind = detect_format(original, config_path)
    if kind == "lord-pytorch":
        config = lord_config(OriginalConfig(original, config_path, LORD_KEYS), presets[kind])
        mapper = lord_state
    else:
        config = overlord_config(OriginalConfig(original, config_path, OVERLORD_KEYS, OVERLORD_IGNORED),
                                 presets[kind])
        mapper = dict
    config = configuration.validate(config)
    config["config_name"] = None
    config["seed"] = None
    config["imported"] = {"format": kind, "from": str(input_dir.resolve())}
    stages = {}
    notes = []
    for stage, file_name in (("latent", "latent.pth"), ("amortized", "amortized.pth")):
        path = input_dir / file_name
        if not path.is_file():
            if stage == "latent":
                raise UserError(f"missing {path}: the original writes it in stage 1")
            continue
        state = mapper(read_original_weights(path))
        if kind == "overlord":
            state = stylegan_state(state, path)
        module = build_checked(config, stage, state, path)
        stages[stage] = {key: value.detach().clone().contiguous() for key, value in module.state_dict().items()}
    if kind == "overlord" and "amortized" in stages:
        tuned = any(not torch.equal(stages["amortized"][key], stages["latent"][key])
                    for key in stages["latent"] if key.startswith("generator."))
        notes.append("its generator was tuned by the original's synthesis stage" if tuned else
                     "its generator is stage 1's (the original's synthesis stage did not run)")
    return kind, config, stages, notes


def build_checked(config, stage, state, path):
    try:
        module = stage_module_class(config, stage)(config)
    except ValueError as error:
        raise UserError(f"{path}: the toolkit cannot build this model: {error}") from None
    load_state_checked(module, state, str(path))
    return module


def import_model(base_dir, input_dir, model_name, presets, overwrite=False, quiet=False):
    """Write cache/models/<model_name>/ from an original model directory; returns its path."""
    base = BaseDir(base_dir)
    model_dir = base.model_dir(model_name)
    if Path(input_dir).resolve() == model_dir.resolve():
        raise UserError(f"{input_dir} is where model {model_name!r} would be written: import it under another name, "
                        f"e.g. {base.import_command(input_dir, model_name)}")
    if model_dir.exists() and any(model_dir.iterdir()) and not overwrite:
        raise UserError(f"model {model_name!r} already exists at {model_dir} (use --overwrite to replace it)")
    kind, config, stages, notes = convert(input_dir, presets)
    with ModelLock(model_dir):
        if overwrite:
            clear_model(base, model_name)
        written = []
        try:
            for stage, state in stages.items():
                save_torch(weights_path(model_dir, stage), state)
                written.append(weights_path(model_dir, stage))
            atomic_write_json(model_dir / "config.json", config)
        except BaseException:
            for path in written:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
    if not quiet:
        print(f"imported a {kind} model from {input_dir}: stages {', '.join(stages)}, images "
              f"{'x'.join(map(str, config['data']['img_shape']))}" + "".join(f"; {note}" for note in notes))
        print(f"wrote {model_dir}")
    return model_dir
