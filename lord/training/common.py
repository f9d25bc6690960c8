"""Pieces the stages share: autocast, host memory, sample choice, and generating translation grids."""

import contextlib
import ctypes
import os
import platform
import shutil

import numpy as np
import torch

from lord.errors import UserError
from lord.visualize import to_uint8, translation_grid


def cpu_has_native_bf16():
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), as torch reports it."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def use_bf16(setting, device):
    """Whether `runtime.mixed_precision` (auto | true | false) asks for bf16 autocast on `device`.

    auto: on CUDA, and on a CPU with native bf16; float32 elsewhere (emulated bf16 is slower).
    """
    setting = str(setting).lower()
    if setting == "auto":
        return device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
    return setting == "true" and device.type in ("cuda", "cpu")


def channels_last_for(config, device):
    """Whether a stage keeps its networks and images in channels_last (`runtime.channels_last`).

    On CUDA for both architectures. On a CPU for OverLORD's StyleGAN2 networks, which oneDNN runs
    faster so (in float32 and bf16), not for LORD's generator, which it runs slower so.
    """
    if not config["runtime"]["channels_last"]:
        return False
    return device.type == "cuda" or (device.type == "cpu" and config.get("arch", "lord") == "overlord")


# glibc's mallopt parameters (malloc.h) and the environment variables that set them at start-up.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MALLOC_ENVIRONMENT = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_")
KEEP_MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed on 64-bit systems
KEEP_TRIM_THRESHOLD = 2**30

_host_memory_kept = False


def keep_freed_host_memory(libc=None):
    """Let this process reuse the host memory it frees, instead of handing it back to the system.

    A CPU training step allocates and frees tens of MB of activations and gradients. glibc's malloc
    serves blocks above its mmap threshold with fresh mappings and returns the top of the heap to the
    system when it frees, so every step page-faults the same buffers in again (about 12,000 faults a
    step for `lord-tiny` at batch 64 in bf16). Raising the mmap threshold to 32 MiB and the trim threshold to
    1 GiB keeps them mapped: the numbers computed are the same. Only on Linux with glibc, once per
    process, and not when the user tuned malloc through its environment variables. Returns whether it
    changed anything.
    """
    global _host_memory_kept
    if _host_memory_kept or any(name in os.environ for name in MALLOC_ENVIRONMENT):
        return False
    if "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    if libc is None:
        if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
            return False
        try:
            libc = ctypes.CDLL("libc.so.6")
        except OSError:
            return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mmap_set = mallopt(M_MMAP_THRESHOLD, KEEP_MMAP_THRESHOLD)
    trim_set = mallopt(M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD)
    _host_memory_kept = True
    return bool(mmap_set) and bool(trim_set)


def precision_name(enabled, device=None):
    """How a stage computes, for its first log line; a float32 run on a device that could autocast in
    bf16 says how to ask for it (the paper presets train in float32, as the published code did)."""
    if enabled:
        return "bf16 autocast"
    if device is not None and use_bf16("auto", device):
        return "float32 (bf16 autocast is supported here: --set runtime.mixed_precision=true)"
    return "float32"


def autocast(device, enabled):
    """bf16 autocast on `device` when enabled (see `use_bf16`), else nothing.

    Under it convolutions and matrix products run in bf16; what the stages keep in float32 (losses,
    reductions, the embedding tables and their optimizer state, the decay terms) they compute in
    float32 explicitly, on CPU as on CUDA.
    """
    if enabled:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# Where runtime.compile=auto compiles: (architecture, stage) pairs per device type, those for which
# the training benchmark measured torch.compile faster than eager (benchmarks/RESULTS.md).
COMPILE_PAYS = {
    "cpu": frozenset({("overlord", "latent")}),
}


def cpp_compilers():
    return [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]


def compile_wanted(runtime, arch, stage, device):
    """Whether `runtime.compile` (true | false | auto) compiles this stage's networks on `device`;
    auto never asks for what the machine cannot do (no C++ compiler: eager)."""
    setting = runtime["compile"]
    if setting == "auto":
        measured_to_pay = (arch, stage) in COMPILE_PAYS.get(device.type, frozenset())
        return measured_to_pay and any(shutil.which(compiler) for compiler in cpp_compilers())
    return bool(setting)


class CompiledAtOneBatchSize:
    """A module through torch.compile at one batch size, and the module itself at any other (an
    epoch's last, smaller batch), so that a run compiles once and never recompiles. The compiled and
    the eager module share their parameters and agree within rounding."""

    def __init__(self, module, batch_size):
        self.module = module
        self.compiled = torch.compile(module)
        self.batch_size = batch_size

    def __call__(self, first, *args, **kwargs):
        chosen = self.compiled if first.shape[0] == self.batch_size else self.module
        return chosen(first, *args, **kwargs)


def compiled(module, wanted, batch_size=None):
    """`module` through torch.compile when `wanted` (see `compile_wanted`), else `module` itself.

    `batch_size`: the size of every full batch the module sees (a single process): compiled for that
    size only, eager at any other. None (a distributed run, where each process's share of a batch
    varies): compiled once with dynamic shapes, for every size. The module keeps its parameters, so
    optimizers, checkpoints and weights are unaffected.
    """
    if not wanted:
        return module
    compilers = cpp_compilers()
    if not any(shutil.which(compiler) for compiler in compilers):
        raise UserError(f"runtime.compile needs a C++ compiler for torch.compile, and none was found "
                        f"({', '.join(compilers)}); install one or set runtime.compile false")
    if batch_size is None:
        return torch.compile(module, dynamic=True)
    return CompiledAtOneBatchSize(module, batch_size)


def float_images(imgs):
    """uint8 (N, H, W, C) numpy images -> float (N, C, H, W) in [0, 1] on the CPU (for sample grids)."""
    return torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2).float().div(255.0)


def pick_samples(classes, count, seed):
    """Indices of up to `count` images of distinct classes (then any), fixed for a seed."""
    order = np.random.default_rng(seed).permutation(len(classes))
    chosen, seen = [], set()
    for index in order:
        if classes[index] not in seen:
            chosen.append(int(index))
            seen.add(classes[index])
        if len(chosen) == count:
            return np.asarray(chosen)
    rest = [int(i) for i in order if int(i) not in set(chosen)]
    return np.asarray(chosen + rest[: count - len(chosen)])


def sample_set(dataset, labels, count, seed, with_masks=False):
    """The fixed images of a stage's translation grids: (indices, float images, float masks or None)."""
    indices = pick_samples(labels, count, seed)
    masks = None
    if with_masks:
        masks = torch.from_numpy(dataset.extras["masks"][indices] > 0)[:, None].float()
    return torch.as_tensor(indices), float_images(dataset.imgs[indices]), masks


@torch.no_grad()
def generate_grid(generate, content_codes, class_codes):
    """(m, n) generations: row r takes class_codes[r], column c takes content_codes[c]."""
    rows, columns = class_codes.shape[0], content_codes.shape[0]
    content = content_codes.repeat(rows, 1)
    classes = class_codes.repeat_interleave(columns, dim=0)
    images = generate(content, classes).float()
    return images.reshape(rows, columns, *images.shape[1:])


def grid_image(content_images, class_images, generated):
    """uint8 grid from float tensors: the first row holds the content images, the first column the classes."""
    rows, columns = generated.shape[:2]
    cells = to_uint8(generated.reshape(rows * columns, *generated.shape[2:]))
    cells = cells.reshape(rows, columns, *cells.shape[1:])
    return translation_grid(to_uint8(content_images), to_uint8(class_images), cells)


def dataset_fingerprint(dataset):
    """A cheap identity of a training set: later stages must see the same images in the same order."""
    import hashlib

    digest = hashlib.sha1()
    digest.update(np.ascontiguousarray(dataset.classes).tobytes())
    digest.update(np.ascontiguousarray(dataset.imgs[:: max(1, len(dataset) // 64)]).tobytes())
    return digest.hexdigest()


def is_training_data(data_block, dataset):
    """Whether `dataset` is the set a model's stage 1 trained on (`data_block` is its config's `data`).
    An imported model records no fingerprint, as the original code keeps none: then the number and
    shape of the images are all there is to compare."""
    if data_block["n_images"] != len(dataset) or tuple(data_block["img_shape"]) != tuple(dataset.img_shape):
        return False
    return data_block["fingerprint"] is None or data_block["fingerprint"] == dataset_fingerprint(dataset)
