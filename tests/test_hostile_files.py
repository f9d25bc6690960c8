"""import-model against hostile published-format model directories: every case ends, in seconds, with
one line on stderr and nothing written, or (for weights it can convert) with a model.

Each case starts from the same small lord-pytorch directory (tests/original_format.py, stage 1 only)
and breaks one thing: the pickle (payloads, shared-part bombs, cycles, deep nesting, huge files,
special files), a config value (overflow, non-finite, out of range, a model too large to build), or
the weights (keys, dtypes, layouts, non-finite values, special and oversized files).
"""

import io
import os
import pickle
import shutil
import signal
import struct
import time
import zipfile
from pathlib import Path

import pytest
import torch

import original_format as original
from lord.assets import BaseDir
from lord.model import load_tensors, weights_path

CASE_SECONDS = 10
MARKER = "pwned"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A lord-pytorch model directory with its stage-1 weights only (the import reads a few hundred kB)."""
    config = original.lord_pytorch_config()
    latent, _ = original.lord_pytorch_states(config, 21)
    return original.write_original_dir(tmp_path_factory.mktemp("pristine") / "model", config, latent)


@pytest.fixture
def watchdog():
    """A case that blocks (a FIFO opened for reading, /dev/zero read to its end) fails instead of hanging."""

    def expire(signum, frame):
        raise TimeoutError(f"the import ran past {CASE_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(CASE_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


class Payload:
    """Unpickling this runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def config_of(directory):
    with open(directory / "config.pkl", "rb") as file:
        return pickle.load(file)


def write_config(directory, config, protocol=pickle.DEFAULT_PROTOCOL):
    (directory / "config.pkl").write_bytes(pickle.dumps(config, protocol=protocol))


def with_config(**changes):
    """A damage that sets top-level config keys (a value None deletes the key)."""

    def damage(directory):
        config = config_of(directory)
        for key, value in changes.items():
            config[key] = value
        write_config(directory, config)

    return damage


def with_nested(path, value):
    def damage(directory):
        config = config_of(directory)
        node = config
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        write_config(directory, config)

    return damage


def raw_config(data):
    return lambda directory: (directory / "config.pkl").write_bytes(data)


def payload_config(protocol):
    def damage(directory):
        config = config_of(directory)
        config["content_std"] = Payload(directory / MARKER)
        write_config(directory, config, protocol)

    return damage


def shared_bomb(directory):
    """60 levels of a list holding its child twice: 2^60 paths in a few hundred bytes."""
    part = [1]
    for _ in range(60):
        part = [part, part]
    config = config_of(directory)
    config["perceptual_loss"]["layers"] = part
    write_config(directory, config)


def self_containing(directory):
    loop = []
    loop.append(loop)
    config = config_of(directory)
    config["perceptual_loss"]["layers"] = loop
    write_config(directory, config)


def nested_lists(depth):
    """`depth` lists each inside the next, written opcode by opcode (pickle itself would recurse)."""
    return raw_config(b"\x80\x04" + b"]" * depth + b"a" * (depth - 1) + b".")


def many_keys(directory):
    config = config_of(directory)
    config["train"] = {f"key{index}": index for index in range(20_000)}
    write_config(directory, config)


def huge_config(directory):
    config = config_of(directory)
    config["note"] = "x" * (2 << 20)
    write_config(directory, config)


def fifo(name):
    def damage(directory):
        (directory / name).unlink()
        os.mkfifo(directory / name)

    return damage


def link_to(name, target):
    def damage(directory):
        (directory / name).unlink()
        os.symlink(target, directory / name)

    return damage


def directory_instead(name):
    def damage(directory):
        (directory / name).unlink()
        (directory / name).mkdir()

    return damage


def truncated(name, keep=0.5):
    def damage(directory):
        data = (directory / name).read_bytes()
        (directory / name).write_bytes(data[: int(len(data) * keep)])

    return damage


def sparse_weights(directory):
    with open(directory / "latent.pth", "wb") as file:
        file.truncate(3 << 30)


def weights(change):
    """A damage that rewrites latent.pth after `change(state)` (which may return a new state)."""

    def damage(directory):
        state = torch.load(directory / "latent.pth", weights_only=True)
        state = change(state) or state
        torch.save(state, directory / "latent.pth")

    return damage


FC = "generator.fc_layers.0.weight"


def set_value(key, value):
    def change(state):
        state[key] = value

    return change


def poke(key, value):
    def change(state):
        state[key] = state[key].clone()
        state[key].view(-1)[3] = value

    return change


def cast(key, dtype):
    def change(state):
        state[key] = state[key].to(dtype)

    return change


def rename(old, new):
    def change(state):
        state[new] = state.pop(old)

    return change


def narrower_modulation(state):
    key = "modulation.adain_per_layer.1.weight"
    state[key] = state[key][:, :5]


def archive_claiming(count, compressed):
    """latent.pth whose one storage claims `count` bytes: stored as a 4-byte record (torch checks the record's
    size), or deflated from `count` zero bytes (a zip bomb: a small file that unpacks to `count` bytes)."""

    def damage(directory):
        buffer = io.BytesIO()
        torch.save({FC: torch.zeros(1, dtype=torch.uint8)}, buffer)
        source = zipfile.ZipFile(buffer)
        pickled = source.read("archive/data.pkl")
        claim = b"J" + struct.pack("<i", count)
        pickled = pickled.replace(b"cpu\x71\x06K\x01t", b"cpu\x71\x06" + claim + b"t")
        pickled = pickled.replace(b"K\x00K\x01\x85", b"K\x00" + claim + b"\x85")
        with zipfile.ZipFile(directory / "latent.pth", "w") as archive:
            for name in source.namelist():
                if name == "archive/data/0" and compressed:
                    archive.writestr(name, bytes(count), compress_type=zipfile.ZIP_DEFLATED)
                else:
                    archive.writestr(name, pickled if name.endswith("data.pkl") else source.read(name))

    return damage


def payload_weights(directory):
    torch.save({FC: Payload(directory / MARKER)}, directory / "latent.pth", pickle_module=pickle)


# (id, damage, what the one line says; None: the import succeeds)
CASES = [
    # the pickle: code, bombs, shapes pickle can take
    ("payload-protocol-0", payload_config(0), "refers to code"),
    ("payload-protocol-2", payload_config(2), "refers to code"),
    ("payload-protocol-5", payload_config(5), "refers to code"),
    ("inst-opcode", raw_config(b"(Vtouch pwned\nios\nsystem\n."), "refers to code"),
    ("persistent-id", raw_config(b"\x80\x02P0\n."), "refers to code"),
    ("shared-parts-bomb", shared_bomb, "shared by two places"),
    ("list-holding-itself", self_containing, "shared by two places"),
    ("100000-nested-lists", nested_lists(100_000), "more than 10000 parts"),
    ("1000-nested-lists", nested_lists(1000), "more than 16 deep"),
    ("20000-keys", many_keys, "more than 10000 parts"),
    ("2-MB-config", huge_config, "more than the 1048576"),
    ("set-value", with_config(n_classes={1, 2}), "not plain data"),
    ("bytes-value", with_config(n_classes=b"4"), "not plain data"),
    ("integer-key", lambda directory: write_config(directory, {**config_of(directory), 7: 1}), "dict key of type int"),
    ("top-level-list", raw_config(pickle.dumps([1, 2])), "not a config dict"),
    ("truncated-pickle", truncated("config.pkl"), "config.pkl: not read"),
    ("empty-config", raw_config(b""), "config.pkl: not read"),
    ("random-bytes", raw_config(bytes(range(256)) * 4), "config.pkl: not read"),
    ("config-fifo", fifo("config.pkl"), "not a regular file"),
    ("config-dev-zero", link_to("config.pkl", "/dev/zero"), "not a regular file"),
    ("config-directory", directory_instead("config.pkl"), "not a regular file"),
    ("config-dangling-link", link_to("config.pkl", "/nonexistent/config.pkl"), "missing config"),
    # config values
    ("content-std-10-400", with_config(content_std=10**400), "integer of more than 63 bits"),
    ("content-std-inf", with_config(content_std=float("inf")), "content_std is inf"),
    ("content-std-nan", with_config(content_std=float("nan")), "content_std is nan"),
    ("content-std-negative", with_config(content_std=-1.0), "content_std is -1.0"),
    ("n-imgs-10-12", with_config(n_imgs=10**12), "n_imgs is 1000000000000"),
    ("n-imgs-10-8", with_config(n_imgs=10**8), "GiB of weights"),
    ("adain-dim-2-16", with_config(adain_dim=2**16), "GiB of weights"),
    ("img-shape-2-20", with_config(img_shape=(2**20, 2**20, 3)), "img_shape is"),
    ("img-shape-5-channels", with_config(img_shape=(64, 64, 5)), "img_shape is"),
    ("img-shape-2-sides", with_config(img_shape=(64, 64)), "img_shape is"),
    ("img-shape-fraction", with_config(img_shape=(64.5, 64, 3)), "img_shape is"),
    ("n-classes-bool", with_config(n_classes=True), "n_classes is True"),
    ("content-dim-string", with_config(content_dim="16"), "content_dim is '16'"),
    ("adain-dim-zero", with_config(adain_dim=0), "adain_dim is 0"),
    ("too-many-adain-layers", with_config(n_adain_layers=9), "cannot build"),
    ("layers-1e300", with_nested(("perceptual_loss", "layers"), [1e300]), "perceptual_loss.layers is"),
    ("layer-2.7", with_nested(("perceptual_loss", "layers"), [2.7, 7]), "perceptual_loss.layers is [2.7, 7]"),
    ("unknown-key", with_nested(("train", "warmup"), 5), "train.warmup"),
    ("learning-rate-string", with_nested(("train", "learning_rate", "generator"), "fast"), "generator is 'fast'"),
    # the weights
    ("weights-payload", payload_weights, "safely"),
    ("weights-nan", weights(poke(FC, float("nan"))), f"{FC} holds NaN or infinite values"),
    ("weights-inf", weights(poke("class_embedding.weight", float("inf"))), "class_embedding.weight holds NaN"),
    ("weights-integer-key", weights(set_value(0, torch.zeros(2))), "the key 0 is not a layer name"),
    ("weights-key-with-spaces", weights(rename(FC, "generator fc.0.weight")), "is not a layer name"),
    ("weights-malformed-layer", weights(rename("modulation.adain_per_layer.1.weight",
                                               "modulation.adain_per_layer.x.weight")), "modulation keys"),
    ("weights-different-widths", weights(narrower_modulation), "different or wrong shapes"),
    ("weights-sparse", weights(lambda state: state.update({FC: state[FC].to_sparse()})), "sparse_coo tensor"),
    ("weights-bool", weights(cast(FC, torch.bool)), f"{FC} holds bool values"),
    ("weights-complex", weights(cast(FC, torch.complex64)), f"{FC} holds complex64 values"),
    ("weights-uint8", weights(cast(FC, torch.uint8)), f"{FC} holds uint8 values"),
    ("weights-int64", weights(cast(FC, torch.int64)), f"{FC} holds int64 values"),
    ("weights-not-a-tensor", weights(set_value(FC, [1.0, 2.0])), f"{FC} holds a list"),
    ("weights-a-list", weights(lambda state: list(state.values())), "not a state dict"),
    ("weights-missing-key", weights(lambda state: {key: value for key, value in state.items() if key != FC}),
     f"missing {FC}"),
    ("weights-wrong-shape", weights(lambda state: state.update({FC: state[FC][:, :3]})), "shape mismatch"),
    ("weights-fifo", fifo("latent.pth"), "not a regular file"),
    ("weights-dev-zero", link_to("latent.pth", "/dev/zero"), "not a regular file"),
    ("weights-3-GB", sparse_weights, "more than the"),
    ("weights-truncated", truncated("latent.pth"), "cannot load weights file"),
    ("weights-record-claiming-2-GB", archive_claiming(2_000_000_000, compressed=False), "does not match expected size"),
    ("weights-zip-bomb-100-MB", archive_claiming(100_000_000, compressed=True), "is compressed"),
    ("weights-empty", truncated("latent.pth", 0), "cannot load weights file"),
    # weights the toolkit converts, saying so
    ("weights-float16", weights(cast(FC, torch.float16)), None),
    ("weights-float64", weights(cast(FC, torch.float64)), None),
    ("weights-bfloat16", weights(lambda state: {key: value.bfloat16() for key, value in state.items()}), None),
]


def files(directory):
    return sorted(str(path.relative_to(directory)) for path in Path(directory).rglob("*")) if directory.exists() else []


@pytest.mark.parametrize("damage, message", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_hostile_directory_is_one_line_or_a_model(pristine, run_cli, tmp_path, watchdog, damage, message):
    directory = tmp_path / "original"
    shutil.copytree(pristine, directory)
    damage(directory)
    base = tmp_path / "base"
    started = time.monotonic()
    result = run_cli("-bd", base, "import-model", "-i", directory, "-mn", "m")
    seconds = time.monotonic() - started
    assert seconds < CASE_SECONDS
    assert "Traceback" not in result.err and not (directory / MARKER).exists()
    if message is None:
        assert result.code == 0 and result.err == "", result
        assert "converted to float32" in result.out
        state = load_tensors(weights_path(BaseDir(base).model_dir("m"), "latent"))
        assert all(value.dtype == torch.float32 for value in state.values())
        return
    assert result.code == 1 and len(result.err_lines) == 1, result
    assert result.err_lines[0].startswith("error: ") and message in result.err_lines[0], result
    assert files(base) == []


def test_the_suite_is_large_enough():
    assert len(CASES) >= 40 and len({case[0] for case in CASES}) == len(CASES)
