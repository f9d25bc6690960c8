"""A model directory: building networks from its config and loading its weights safely.

    cache/models/<name>/config.json            the full resolved config, plus the data it was trained on
    cache/models/<name>/<stage>.pt             final weights of a completed stage (a flat state_dict)
    cache/models/<name>/checkpoint-<stage>.pt  the training state, for --resume
    cache/models/<name>/metrics.jsonl          one JSON object per epoch of every stage
    cache/models/<name>/samples/               translation grids, one PNG per epoch and stage

Stages: `latent` (train), `amortized` (train-encoders), `synthesis` (train-synthesis, OverLORD).
All weight files are loaded with `weights_only=True`: a file carrying a pickle payload runs no code.
A file's checksum is checked before it is unpickled, and a config is checked (its structure, and the
size of the networks it implies, measured on PyTorch's `meta` device) before any network is built.
"""

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from lord import configuration
from lord.assets import BaseDir, open_torch_file, read_json
from lord.configuration import flatten
from lord.errors import UserError
from lord.networks import stylegan
from lord.networks.lord import Encoder, Generator

STAGES = ("latent", "amortized", "synthesis")
RUN_KEYS = ("config_name", "seed", "data", "imported")  # what config.json records besides the preset and --set


def weights_path(model_dir, stage):
    return Path(model_dir) / f"{stage}.pt"


def checkpoint_path(model_dir, stage):
    return Path(model_dir) / f"checkpoint-{stage}.pt"


# The most a stage's weights may take in float32: a config asking for more is refused before anything is built.
MAX_MODEL_BYTES = 4 * 2**30
MAX_IMAGE_SIDE = 4096


def read_config(model_dir):
    path = Path(model_dir) / "config.json"
    config = read_json(path, "model config")
    check_model_config(config, path)
    return config


def check_model_config(config, origin):
    """The structure every model's config.json has, so that a damaged one is one line naming it."""

    def damaged(problem):
        return UserError(f"damaged model config {origin}: {problem}")

    if not isinstance(config, dict):
        raise damaged(f"it holds a {type(config).__name__}, not a config object")
    if config.get("arch", "lord") not in ("lord", "overlord"):
        raise damaged(f"arch is {config.get('arch')!r}")
    data = config.get("data")
    if not isinstance(data, dict):
        raise damaged("it has no `data` block")
    shape = data.get("img_shape")
    if (not isinstance(shape, list) or len(shape) != 3
            or not all(type(side) is int and 1 <= side <= MAX_IMAGE_SIDE for side in shape[:2])
            or shape[2] not in (1, 3)):
        raise damaged(f"data.img_shape is {shape!r}, not [height, width, 1 or 3] with sides up to {MAX_IMAGE_SIDE}")
    counts = ("n_classes", "n_images") + (("n_labels",) if config.get("arch") == "overlord" else ())
    for key in counts:
        if type(data.get(key)) is not int or data[key] < 1:
            raise damaged(f"data.{key} is {data.get(key)!r}, not a positive integer")
    try:
        configuration.validate(config)
    except UserError as error:
        raise damaged(str(error)) from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        raise damaged(f"{type(error).__name__} {error}") from None
    return config


def stage_weight_bytes(config, stage, origin):
    """The bytes of the stage's weights in float32, from its networks built on the `meta` device (no memory)."""
    try:
        with torch.device("meta"):
            module = stage_module_class(config, stage)(config)
    except UserError:
        raise
    except (RuntimeError, ValueError, TypeError, KeyError, OverflowError, AttributeError, IndexError) as error:
        raise UserError(f"{origin}: the toolkit cannot build this model: {str(error).splitlines()[0]}") from None
    return sum(tensor.numel() * 4 for tensor in module.state_dict().values())


def check_model_size(config, stage, origin):
    """Refuse a config whose stage would not fit the stated limit, before it is built; returns its bytes."""
    size = stage_weight_bytes(config, stage, origin)
    if size > MAX_MODEL_BYTES:
        raise UserError(f"{origin}: its {stage} stage would take {size / 2**30:.1f} GiB of weights, more than the "
                        f"{MAX_MODEL_BYTES // 2**30} GiB the toolkit builds")
    return size


def completed_stages(model_dir):
    return [stage for stage in STAGES if weights_path(model_dir, stage).is_file()]


def load_tensors(path, what="weights", max_bytes=None):
    """torch.load restricted to tensors and plain containers, of a regular file whose checksum (where it
    has one) matches; a pickle payload is refused, not run."""
    file, _ = open_torch_file(path, f"{what} file", max_bytes)
    try:
        with file:
            check_archive(file, path, what)
            return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle payloads, torn or foreign files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot load {what} file {path} safely: {first_line}") from None


def check_archive(file, path, what):
    """A zip archive (torch.save's format) whose members are stored as torch writes them: a compressed
    member could unpack to far more memory than the file holds (a zip bomb), so it is refused unread."""
    size = os.fstat(file.fileno()).st_size
    try:
        if not zipfile.is_zipfile(file):
            return
        file.seek(0)
        members = zipfile.ZipFile(file).infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        file.seek(0)
        return
    finally:
        file.seek(0)
    packed = [member.filename for member in members if member.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise UserError(f"cannot load {what} file {path} safely: {packed[0][:100]} is compressed, which torch.save "
                        "never does")
    if sum(member.file_size for member in members) > size:
        raise UserError(f"cannot load {what} file {path} safely: its members claim more bytes than the file has")


def load_state_checked(module, state, origin):
    """load_state_dict, with an error naming the mismatched keys or shapes."""
    if not isinstance(state, dict) or not all(isinstance(key, str) and isinstance(value, torch.Tensor)
                                              for key, value in state.items()):
        raise UserError(f"{origin} is not a state dict of tensors")
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{key} {tuple(state[key].shape)} vs {tuple(own[key].shape)}"
        for key in sorted(set(own) & set(state))
        if tuple(state[key].shape) != tuple(own[key].shape)
    ]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else ""))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected[:6]) + (" ..." if len(unexpected) > 6 else ""))
    if wrong:
        problems.append("shape mismatch " + ", ".join(wrong[:6]) + (" ..." if len(wrong) > 6 else ""))
    if problems:
        raise UserError(f"{origin} does not fit the model built from its config: {'; '.join(problems)}")
    module.load_state_dict(state)


def img_shape_of(config):
    return tuple(config["data"]["img_shape"])


def build_generator(config):
    return Generator(
        config["content_dim"], config["class_dim"], img_shape_of(config),
        n_adain_layers=config["n_adain_layers"], adain_dim=config["adain_dim"],
        final_conv_dim=config["final_conv_dim"], negative_slope=config["leaky_relu_slope"],
    )


def build_encoder(config, code_dim):
    return Encoder(
        img_shape_of(config), code_dim, channels=tuple(config["encoder"]["channels"]),
        fc_dim=config["encoder"]["fc_dim"], negative_slope=config["leaky_relu_slope"],
        center_input=config["encoder"].get("center_input", False),
    )


class LatentModel(torch.nn.Module):
    """Stage 1: the generator with one free code per class and one per training image."""

    def __init__(self, config):
        super().__init__()
        data = config["data"]
        self.generator = build_generator(config)
        self.class_embedding = torch.nn.Embedding(data["n_classes"], config["class_dim"])
        self.content_embedding = torch.nn.Embedding(data["n_images"], config["content_dim"])
        torch.nn.init.uniform_(self.class_embedding.weight, -0.05, 0.05)
        torch.nn.init.uniform_(self.content_embedding.weight, -0.05, 0.05)


class AmortizedModel(torch.nn.Module):
    """Stage 2: encoders that infer both codes from an image, and the tuned generator."""

    def __init__(self, config):
        super().__init__()
        self.content_encoder = build_encoder(config, config["content_dim"])
        self.class_encoder = build_encoder(config, config["class_dim"])
        self.generator = build_generator(config)

    def forward(self, images):
        return self.generator(self.content_encoder(images), self.class_encoder(images))


# -- OverLORD ----------------------------------------------------------------------------------------


def code_dims(config):
    """(label, correlated, uncorrelated) code sizes; the correlated size is 0 without a correlation."""
    correlated = config["correlated_dim"] if config["correlation"] is not None else 0
    return config["label_dim"], correlated, config["uncorrelated_dim"]


def reference_code(label_code, correlated_code):
    """The part of the code a reference image gives in a translation: concat(label, correlated if any)."""
    return label_code if correlated_code is None else torch.cat([label_code, correlated_code], dim=1)


def translation_code(uncorrelated_code, reference_code):
    """The generator's input in the published order: concat(uncorrelated, label, correlated if any)."""
    return torch.cat([uncorrelated_code, reference_code], dim=1)


def overlord_code(label_code, correlated_code, uncorrelated_code):
    return translation_code(uncorrelated_code, reference_code(label_code, correlated_code))


def correlated_input(images, masks):
    """What stage 1's correlated encoder sees: the image, or only its masked region (localized correlation)."""
    return images if masks is None else images * masks


def build_stylegan_generator(config):
    height, _, channels = img_shape_of(config)
    options = config["generator"]
    return stylegan.Generator(sum(code_dims(config)), height, channels, channel_base=options["channel_base"],
                              channel_max=options["channel_max"])


def build_stylegan_encoder(config, code_dim):
    height, _, channels = img_shape_of(config)
    options = config["encoder"]
    return stylegan.Encoder(height, channels, code_dim, dim_in=options["dim_in"], max_conv_dim=options["max_conv_dim"])


def build_discriminator(config):
    height, _, channels = img_shape_of(config)
    options = config["discriminator"]
    return stylegan.Discriminator(
        height, channels, options["channel_base"], options["channel_max"], mbstd_group_size=options["mbstd_group_size"]
    )


def build_correlated_encoder(config):
    _, correlated_dim, _ = code_dims(config)
    return build_stylegan_encoder(config, correlated_dim) if correlated_dim else None


def uses_ema(config):
    return bool(config["synthesis"]["ema"]["enabled"])


class OverlordLatentModel(torch.nn.Module):
    """OverLORD stage 1: the generator, one free code per label value and per image (both uniform in
    +-0.05 at the start), and the correlated encoder of transformed views (None without a correlation)."""

    def __init__(self, config):
        super().__init__()
        data = config["data"]
        label_dim, _, uncorrelated_dim = code_dims(config)
        self.generator = build_stylegan_generator(config)
        self.label_embedding = torch.nn.Embedding(data["n_labels"], label_dim)
        self.uncorrelated_embedding = torch.nn.Embedding(data["n_images"], uncorrelated_dim)
        self.correlated_encoder = build_correlated_encoder(config)
        torch.nn.init.uniform_(self.label_embedding.weight, -0.05, 0.05)
        torch.nn.init.uniform_(self.uncorrelated_embedding.weight, -0.05, 0.05)


class OverlordAmortizedModel(torch.nn.Module):
    """OverLORD stage 2: an encoder for every code, all on the whole image (the correlated one is new and
    learns what stage 1's encoder gives for a transformed, masked view), stage 1's generator, and the
    discriminator stage 3 starts from (as published, it is created here and first trained there)."""

    def __init__(self, config):
        super().__init__()
        label_dim, _, uncorrelated_dim = code_dims(config)
        self.label_encoder = build_stylegan_encoder(config, label_dim)
        self.uncorrelated_encoder = build_stylegan_encoder(config, uncorrelated_dim)
        self.correlated_encoder = build_correlated_encoder(config)
        self.generator = build_stylegan_generator(config)
        self.discriminator = build_discriminator(config)

    def encode(self, images):
        """(label, correlated or None, uncorrelated) codes of images (B, C, H, W)."""
        correlated = None if self.correlated_encoder is None else self.correlated_encoder(images)
        return self.label_encoder(images), correlated, self.uncorrelated_encoder(images)


class OverlordSynthesisModel(OverlordAmortizedModel):
    """OverLORD stage 3: the tuned encoders, generator and discriminator, and, with `synthesis.ema.enabled`
    (the toolkit's addition), the generator's moving average used for samples and inference."""

    def __init__(self, config):
        super().__init__(config)
        if uses_ema(config):
            self.generator_ema = build_stylegan_generator(config)


def inference_generator(module):
    """The generator a stage's module translates with: the moving average where there is one."""
    return getattr(module, "generator_ema", module.generator)


STAGE_MODULES = {
    ("lord", "latent"): LatentModel,
    ("lord", "amortized"): AmortizedModel,
    ("overlord", "latent"): OverlordLatentModel,
    ("overlord", "amortized"): OverlordAmortizedModel,
    ("overlord", "synthesis"): OverlordSynthesisModel,
}


def arch_of(config):
    return config.get("arch", "lord")


def stage_module_class(config, stage):
    """The module class of `stage` for the config's architecture."""
    arch = arch_of(config)
    if (arch, stage) not in STAGE_MODULES:
        raise UserError(f"{arch} models have no {stage} stage")
    return STAGE_MODULES[arch, stage]


def load_stage(model_dir, stage, config=None):
    """The module of a completed stage with its final weights, on the CPU, in eval mode."""
    config = read_config(model_dir) if config is None else config
    module_class = stage_module_class(config, stage)
    path = weights_path(model_dir, stage)
    if not path.is_file():
        done = completed_stages(model_dir)
        raise UserError(
            f"model {Path(model_dir).name} has no completed {stage} stage"
            + (f" (completed: {', '.join(done)})" if done else " (no stage completed yet)")
        )
    check_model_size(config, stage, f"model config {Path(model_dir) / 'config.json'}")
    try:
        module = module_class(config)
    except (RuntimeError, ValueError, TypeError, KeyError) as error:
        raise UserError(f"model config {Path(model_dir) / 'config.json'} cannot be built: "
                        f"{str(error).splitlines()[0]}") from None
    state = load_tensors(path)
    load_state_checked(module, state, str(path))
    bad = next((key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()),
               None)
    if bad is not None:
        raise UserError(f"{path}: {bad} holds NaN or infinite values; retrain this stage with --overwrite")
    return module.eval()


# -- describing a model: `lord.py info` and the Model tab of `serve` ---------------------------------------


def stages_of(config):
    return [stage for stage in STAGES if (arch_of(config), stage) in STAGE_MODULES]


def labeled_attribute(config):
    return config.get("labeled_attribute", "classes") if arch_of(config) == "overlord" else "classes"


def n_labels_of(config):
    data = config.get("data", {})
    return data.get("n_labels") if arch_of(config) == "overlord" else data.get("n_classes")


def label_names(base_dir, config, n_labels):
    """The names of a model's label values, from the preprocessed data it was trained on (`age_names`,
    `domain_names`, `class_names`, ...), or None where the data has none or is gone."""
    attribute = config.get("labeled_attribute", "classes")
    key = "class_names" if attribute == "classes" else f"{attribute}_names"
    try:
        path = BaseDir(base_dir).data_path(config["data"]["name"])
        with np.load(path, allow_pickle=False) as archive:
            names = archive[key] if key in archive.files else None
    except (KeyError, TypeError, OSError, ValueError, UserError):
        return None
    if names is None or names.ndim != 1 or len(names) != n_labels:
        return None
    return [str(name) for name in names]


def preset_differences(config, presets):
    """`KEY=VALUE` for every config key that differs from the named preset (the run's --set values),
    or None when the preset is unknown."""
    preset = (presets or {}).get(config.get("config_name"))
    if preset is None:
        return None
    own = flatten({key: value for key, value in config.items() if key not in RUN_KEYS})
    reference = flatten(preset)
    return [f"{key}={json.dumps(value)}" for key, value in own.items()
            if key not in reference or reference[key] != value]


def stage_states(model_dir, config):
    """Per stage of the architecture: `done` (final weights), `interrupted` (a checkpoint to --resume)
    or `not started`."""
    states = {}
    for stage in stages_of(config):
        if weights_path(model_dir, stage).is_file():
            states[stage] = "done"
        elif checkpoint_path(model_dir, stage).is_file():
            states[stage] = "interrupted"
        else:
            states[stage] = "not started"
    return states


def describe_model(base_dir, model_name, presets=None):
    """What a user needs to drive a model from the command line, as plain JSON values: its data, its
    label values with their names (the indices `--label` takes), the stages done and its config."""
    model_dir = BaseDir(base_dir).existing_model_dir(model_name)
    config = read_config(model_dir)
    if not isinstance(config, dict) or not isinstance(config.get("data"), dict):
        raise UserError(f"{model_dir / 'config.json'} is not a model config")
    data = config["data"]
    n_labels = n_labels_of(config)
    return {
        "model": model_name,
        "directory": str(model_dir),
        "arch": arch_of(config),
        "config_name": config.get("config_name"),
        "seed": config.get("seed"),
        "imported": config.get("imported"),
        "data": {key: data.get(key) for key in ("name", "n_images", "img_shape")},
        "labeled_attribute": labeled_attribute(config),
        "n_labels": n_labels,
        "label_names": label_names(base_dir, config, n_labels),
        "stages": stage_states(model_dir, config),
        "set_values": preset_differences(config, presets),
        "config": config,
    }


def format_description(description):
    """`describe_model`'s answer as the lines `lord.py info` prints."""
    data = description["data"]
    shape = "x".join(str(side) for side in data.get("img_shape") or [])
    preset = description["config_name"]
    origin = (f"imported from {description['imported'].get('format')} ({description['imported'].get('from')})"
              if description["imported"] else f"preset {preset}, seed {description['seed']}")
    lines = [f"model {description['model']}: {description['arch']}, {origin}",
             f"data: {data.get('name') if data.get('name') is not None else '(not recorded)'}, "
             f"{data.get('n_images')} images of {shape}"]
    names = description["label_names"]
    n_labels = description["n_labels"]
    values = f"0..{n_labels - 1}" if isinstance(n_labels, int) else "unknown"
    unnamed = f"; no names: {data['name']} has none or is gone" if data.get("name") and not names else ""
    lines.append(f"labels ({description['labeled_attribute']}): {values}, the indices --label takes{unnamed}")
    if names:
        lines += [f"  {value}: {name}" for value, name in enumerate(names)]
    lines.append("stages: " + ", ".join(f"{stage} {state}" for stage, state in description["stages"].items()))
    differences = description["set_values"]
    if differences is not None:
        lines.append("--set values: " + (" ".join(differences) if differences else "none (the preset unchanged)"))
    lines.append("config: " + json.dumps(description["config"], separators=(",", ":")))
    return "\n".join(lines)
