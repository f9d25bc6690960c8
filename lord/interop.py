"""Model directories written by the authors' code, read into toolkit model directories (`import-model`).

The published LORD (lord-pytorch's `Lord.save`) and OverLORD (`Model.save`) write `config.pkl` (a
pickled dict), `latent.pth` (stage 1) and, once stage 2 ran, `amortized.pth` (state dicts, with
`module.` in the keys where DataParallel wrapped a module). OverLORD saves its encoders, generator and
discriminator to `amortized.pth` through stages 2 and 3, so that file is imported as the toolkit's
stage 2 (`amortized`); `train-synthesis` continues from it as the original's stage 3 would.

`config.pkl` is read by a small pickle interpreter of its own (`read_plain_pickle`) that builds plain
values only (dicts, lists, tuples, strings, numbers, booleans, None), one opcode at a time without
recursion, within a size, a node and a depth budget, and refuses anything that would import or call
code and any part shared between two places (the way a few hundred bytes can stand for 2^60 values).
Only regular files are opened. Every config value is checked (type, range) and the memory of the
networks it implies is measured on PyTorch's `meta` device before anything is built; weight files are
read with `weights_only=True`, and every tensor is checked (key, dtype, layout, finite values) before
it is used. The model directory is written as a transaction under the model's lock (see lord.assets).
"""

import copy
import math
import pickletools
import re
from pathlib import Path

import torch

from lord import configuration
from lord.assets import (
    BaseDir, ModelLock, atomic_write_json, model_exists, open_regular_file, read_bounded, remove_leftover_staging,
    remove_tensorboard, save_torch, staged_model_dir,
)
from lord.errors import UserError
from lord.model import check_model_size, load_state_checked, load_tensors, stage_module_class, weights_path
from lord.networks.stylegan import blur_kernel

FORMATS = ("lord-pytorch", "overlord")
MAX_CONFIG_BYTES = 1 << 20  # a published config.pkl has about 2 kB
MAX_CONFIG_NODES = 10_000
MAX_CONFIG_DEPTH = 16
MAX_CONFIG_INT = 2**63
MAX_COUNT = 10**9  # images, labels, widths
MAX_NUMBER = 1e6  # rates, weights, standard deviations
MAX_IMAGE_SIDE = 4096
TENSOR_KEY = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")
MAX_KEY_LENGTH = 200
CONVERTED_DTYPES = (torch.float16, torch.bfloat16, torch.float64)

SCALAR_OPCODES = {
    "NONE": lambda arg: None, "NEWTRUE": lambda arg: True, "NEWFALSE": lambda arg: False,
    "INT": lambda arg: arg, "BININT": int, "BININT1": int, "BININT2": int, "LONG": int, "LONG1": int, "LONG4": int,
    "FLOAT": float, "BINFLOAT": float,
    "UNICODE": str, "BINUNICODE": str, "SHORT_BINUNICODE": str, "BINUNICODE8": str,
}
CODE_OPCODES = ("GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "PERSID",
                "BINPERSID", "EXT1", "EXT2", "EXT4")
MEMO_GETS = ("GET", "BINGET", "LONG_BINGET")
MEMO_PUTS = ("PUT", "BINPUT", "LONG_BINPUT")


class PlainPickleError(Exception):
    """What makes a pickle more than plain data."""


def _pop_to_mark(stack, marks):
    if not marks:
        raise PlainPickleError("it is malformed (no mark)")
    start = marks.pop()
    items = stack[start:]
    del stack[start:]
    return items


def _top(stack, kind, what):
    if not stack or not isinstance(stack[-1], kind):
        raise PlainPickleError(f"it is malformed ({what} without a {kind.__name__})")
    return stack[-1]


def _check_key(key):
    if not isinstance(key, str):
        raise PlainPickleError(f"it has a dict key of type {type(key).__name__}; a config's keys are strings")
    return key


def read_plain_pickle(data):
    """The value a pickle of plain data stands for, built one opcode at a time; PlainPickleError otherwise."""
    stack, marks, memo = [], [], {}
    nodes = 0
    stopped = False
    for opcode, arg, _ in pickletools.genops(data):
        name = opcode.name
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            stopped = True
            break
        if name in CODE_OPCODES:
            target = arg if isinstance(arg, str) else None
            if name == "STACK_GLOBAL" and len(stack) >= 2 and all(isinstance(part, str) for part in stack[-2:]):
                target = ".".join(stack[-2:])
            raise PlainPickleError(f"it refers to code ({name}{' ' + shown(target) if target else ''})")
        nodes += 1
        if nodes > MAX_CONFIG_NODES:
            raise PlainPickleError(f"it has more than {MAX_CONFIG_NODES} parts")
        if name in SCALAR_OPCODES:
            value = SCALAR_OPCODES[name](arg)
            if type(value) is int and abs(value) >= MAX_CONFIG_INT:
                raise PlainPickleError("it holds an integer of more than 63 bits")
            stack.append(value)
        elif name == "MARK":
            marks.append(len(stack))
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            count = int(name[-1])
            if len(stack) < count:
                raise PlainPickleError("it is malformed (a tuple of missing values)")
            items = stack[-count:]
            del stack[-count:]
            stack.append(tuple(items))
        elif name == "TUPLE":
            stack.append(tuple(_pop_to_mark(stack, marks)))
        elif name == "LIST":
            stack.append(_pop_to_mark(stack, marks))
        elif name == "DICT":
            items = _pop_to_mark(stack, marks)
            if len(items) % 2:
                raise PlainPickleError("it is malformed (a dict of an odd number of values)")
            stack.append({_check_key(items[i]): items[i + 1] for i in range(0, len(items), 2)})
        elif name == "APPEND":
            if len(stack) < 2:
                raise PlainPickleError("it is malformed (an append without a value)")
            value = stack.pop()
            _top(stack, list, "an append").append(value)
        elif name == "APPENDS":
            items = _pop_to_mark(stack, marks)
            _top(stack, list, "an append").extend(items)
        elif name == "SETITEM":
            if len(stack) < 3:
                raise PlainPickleError("it is malformed (a dict item without a value)")
            value, key = stack.pop(), stack.pop()
            _top(stack, dict, "a dict item")[_check_key(key)] = value
        elif name == "SETITEMS":
            items = _pop_to_mark(stack, marks)
            if len(items) % 2:
                raise PlainPickleError("it is malformed (dict items of an odd number of values)")
            target = _top(stack, dict, "dict items")
            for i in range(0, len(items), 2):
                target[_check_key(items[i])] = items[i + 1]
        elif name == "MEMOIZE" or name in MEMO_PUTS:
            if not stack:
                raise PlainPickleError("it is malformed (a memo of nothing)")
            memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
        elif name in MEMO_GETS or name == "DUP":
            if name == "DUP":
                if not stack:
                    raise PlainPickleError("it is malformed (a copy of nothing)")
                value = stack[-1]
            elif arg not in memo:
                raise PlainPickleError("it is malformed (a reference to nothing)")
            else:
                value = memo[arg]
            if isinstance(value, (list, dict, tuple)):
                raise PlainPickleError("one of its parts is shared by two places (or holds itself); a config's "
                                       "values are written out each time")
            stack.append(value)
        elif name == "POP":
            if stack and len(stack) > (marks[-1] if marks else 0):
                stack.pop()
            elif marks:
                marks.pop()
            else:
                raise PlainPickleError("it is malformed (a pop of nothing)")
        elif name == "POP_MARK":
            _pop_to_mark(stack, marks)
        else:
            raise PlainPickleError(f"it holds a value that is not plain data ({name})")
    if not stopped or len(stack) != 1 or marks:
        raise PlainPickleError("it is truncated or malformed")
    check_depth(stack[0])
    return stack[0]


def check_depth(value):
    """Refuse nesting deeper than MAX_CONFIG_DEPTH, walked without recursion."""
    pending = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > MAX_CONFIG_DEPTH:
            raise PlainPickleError(f"it nests values more than {MAX_CONFIG_DEPTH} deep")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, (list, tuple)) else ()
        pending.extend((child, depth + 1) for child in children)


def read_config_pickle(path):
    """The dict in an original `config.pkl`, read without running anything."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        raise UserError(f"missing {path}: not a model directory of lord-pytorch or OverLORD")
    with open_regular_file(path, "config", MAX_CONFIG_BYTES) as file:
        data = read_bounded(file, MAX_CONFIG_BYTES, path, "config")
    try:
        config = read_plain_pickle(data)
    except PlainPickleError as error:
        raise UserError(f"{path}: not read: {error}; only a pickle of plain values is accepted") from None
    except Exception as error:  # pickletools' own complaints about a truncated or foreign file
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{path}: not read ({first[:200]}); only a pickle of plain values is accepted") from None
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


def shown(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_number(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and abs(value) <= MAX_NUMBER)


class OriginalConfig:
    """Typed access to an original config, with errors that name the file and the key."""

    def __init__(self, config, path, known, ignored=()):
        self.config = config
        self.path = path
        unknown = sorted(flat_keys(config) - set(known) - set(ignored))
        if unknown:
            raise UserError(f"{path}: keys the toolkit cannot express: {', '.join(unknown)}"[:500])

    def get(self, key, kind, required=True):
        node = self.config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                if required:
                    raise UserError(f"{self.path}: missing key {key}")
                return None
            node = node[part]
        expected = {
            "int": f"an integer from 1 to {MAX_COUNT}",
            "number": f"a number from 0 to {MAX_NUMBER:g}",
            "bool": "true or false",
            "str": "a string",
            "optional_str": "a string or None",
            "numbers": f"a list of numbers up to {MAX_NUMBER:g}",
            "layers": "a list of layer indices from 0 to 100",
        }[kind]
        ok = {
            "int": lambda: type(node) is int and 0 < node <= MAX_COUNT,
            "number": lambda: is_number(node) and node >= 0,
            "bool": lambda: isinstance(node, bool),
            "str": lambda: isinstance(node, str) and len(node) <= 100,
            "optional_str": lambda: node is None or isinstance(node, str) and len(node) <= 100,
            "numbers": lambda: isinstance(node, (list, tuple)) and len(node) <= 100 and all(map(is_number, node)),
            "layers": lambda: isinstance(node, (list, tuple)) and len(node) <= 100 and all(
                type(layer) is int and 0 <= layer <= 100 for layer in node),
        }[kind]()
        if not ok:
            raise UserError(f"{self.path}: {key} is {shown(node)}, the toolkit cannot express it (expected {expected})")
        return list(node) if kind in ("numbers", "layers") else node

    def img_shape(self):
        shape = self.get("img_shape", "numbers")
        if (len(shape) != 3 or not all(type(side) is int for side in shape)
                or not all(1 <= side <= MAX_IMAGE_SIDE for side in shape[:2]) or shape[2] not in (1, 3)):
            raise UserError(f"{self.path}: img_shape is {shown(shape)}, expected (height, width, channels) with sides "
                            f"up to {MAX_IMAGE_SIDE} and 1 or 3 channels")
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
    config["perceptual_loss"]["layers"] = original.get("perceptual_loss.layers", "layers")
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
    prefix = "modulation.adain_per_layer."
    modulation = [key[len(prefix):].split(".") for key in state if key.startswith(prefix)]
    if any(len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 4 for parts in modulation):
        raise UserError(f"modulation keys are not {prefix}<layer>.<weight or bias>")
    layers = sorted({int(parts[0]) for parts in modulation})
    if layers:
        if layers != list(range(len(layers))):
            raise UserError(f"modulation layers {layers[:8]} are not numbered 0..{len(layers) - 1}")
        for name in ("weight", "bias"):
            parts = [state.get(f"{prefix}{layer}.{name}") for layer in layers]
            if any(part is None for part in parts):
                raise UserError(f"a modulation layer lacks its {name}")
            shapes = {tuple(part.shape) for part in parts}
            if len(shapes) != 1 or len(next(iter(shapes))) != (2 if name == "weight" else 1):
                raise UserError(f"the modulation layers' {name}s have different or wrong shapes: "
                                f"{', '.join(str(shape) for shape in sorted(shapes))}")
            out[f"generator.modulation.linear.{name}"] = torch.cat(parts, dim=0)
    for key, value in state.items():
        if not key.startswith("generator."):
            continue
        parts = key.split(".")
        if parts[1] == "adain_conv_layers" and len(parts) == 4 and parts[2].isdigit() and int(parts[2]) % 4 == 1:
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
    config["perceptual_loss"]["layers"] = original.get("perceptual_loss.layers", "layers")
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


def check_original_tensors(state, path, notes):
    """Every entry a named, dense, finite floating-point tensor; float16, bfloat16 and float64 are converted to
    float32 (and `notes` says so). Returns the checked state."""
    if not isinstance(state, dict):
        raise UserError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    converted = set()
    out = {}
    for key, value in state.items():
        if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH or not TENSOR_KEY.fullmatch(key):
            raise UserError(f"{path}: the key {shown(key)} is not a layer name (letters, digits, '_' and '.')")
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{path}: {key} holds a {type(value).__name__}, not a tensor")
        if value.layout != torch.strided or value.is_quantized or value.is_nested:
            raise UserError(f"{path}: {key} is a {str(value.layout).replace('torch.', '')}"
                            f"{' quantized' if value.is_quantized else ''} tensor; weights are dense tensors")
        if value.dtype in CONVERTED_DTYPES:
            converted.add(str(value.dtype).replace("torch.", ""))
            value = value.float()
        elif value.dtype != torch.float32:
            raise UserError(f"{path}: {key} holds {str(value.dtype).replace('torch.', '')} values; weights are "
                            "floating-point numbers")
        if not bool(torch.isfinite(value).all()):
            raise UserError(f"{path}: {key} holds NaN or infinite values")
        out[key] = value
    if converted:
        notes.append(f"{path.name} holds {' and '.join(sorted(converted))} tensors, converted to float32")
    return out


def read_original_weights(path, expected_bytes, notes):
    """The checked state dict of a published weight file. A file much larger than the weights its config
    implies (float64 at most doubles them) is refused before it is read."""
    limit = 2 * expected_bytes + (64 << 20)
    state = load_tensors(path, "weights", max_bytes=limit)
    return strip_data_parallel(check_original_tensors(state, path, notes))


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
    try:
        config = configuration.validate(config)
    except UserError as error:
        raise UserError(f"{config_path}: {error}") from None
    config["config_name"] = None
    config["seed"] = None
    config["imported"] = {"format": kind, "from": str(input_dir.resolve())}
    sizes = {stage: check_model_size(config, stage, config_path) for stage in ("latent", "amortized")}
    stages = {}
    notes = []
    for stage, file_name in (("latent", "latent.pth"), ("amortized", "amortized.pth")):
        path = input_dir / file_name
        if not (path.exists() or path.is_symlink()):
            if stage == "latent":
                raise UserError(f"missing {path}: the original writes it in stage 1")
            continue
        try:
            state = mapper(read_original_weights(path, sizes[stage], notes))
        except UserError as error:
            message = str(error)
            raise UserError(message if str(path) in message else f"{path}: {message}") from None
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
    """Write cache/models/<model_name>/ from an original model directory; returns its path.

    Everything is read and checked first; then, under the model's lock, the existence check is made
    (again) and the directory is assembled beside its place and renamed into it, replacing an old model
    (with --overwrite) only at that instant."""
    base = BaseDir(base_dir)
    model_dir = base.model_dir(model_name)
    if Path(input_dir).resolve() == model_dir.resolve():
        raise UserError(f"{input_dir} is where model {model_name!r} would be written: import it under another name, "
                        f"e.g. {base.import_command(input_dir, model_name)}")
    exists = f"model {model_name!r} already exists at {model_dir} (use --overwrite to replace it)"
    if model_exists(model_dir) and not overwrite:
        raise UserError(exists)
    kind, config, stages, notes = convert(input_dir, presets)
    with ModelLock(model_dir):
        remove_leftover_staging(model_dir)
        if model_exists(model_dir) and not overwrite:
            raise UserError(exists)
        with staged_model_dir(model_dir) as staging:
            for stage, state in stages.items():
                save_torch(weights_path(staging, stage), state)
            atomic_write_json(staging / "config.json", config)
        if overwrite:
            remove_tensorboard(base, model_name)
    if not quiet:
        print(f"imported a {kind} model from {input_dir}: stages {', '.join(stages)}, images "
              f"{'x'.join(map(str, config['data']['img_shape']))}" + "".join(f"; {note}" for note in notes))
        print(f"wrote {model_dir}")
    return model_dir
