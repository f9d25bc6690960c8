#!/usr/bin/env python3
"""Training speed and memory of every stage, against a reference-style implementation.

For each stage and size it measures, in a fresh subprocess each (so peak memory is the stage's own):

  ours       the toolkit's stage: uint8 data on the device gathered by index, batched device
             augmentations, bf16 autocast + channels_last on CUDA, foreach/fused Adam, no host sync
             in the step.
  reference  the way the original code trains, on the same networks: the whole dataset converted to
             float32 in host memory, a per-sample Dataset with a DataLoader (1 worker, pinned memory),
             each batch moved to the device, float32 everywhere, dense Adam over the full embedding
             tables, a loss `.item()` every step; OverLORD's StyleGAN2 layers computed as the published
             code computes them (per-sample weights in a grouped convolution, upfirdn2d's CPU path:
             benchmarks/original_formulation.py), or with the toolkit's layers (--reference-layers toolkit).

Images/s is the median over timed steps after warm-up (synchronised on CUDA), and the median again
over --repeats measurements that alternate between the two paths; peak host memory is the process's
maximum RSS; peak CUDA memory is torch's max allocated. It also measures how our step
time grows with the number of images (embedding tables of 10^4 to 10^6 rows, both embedding
updates).

How much of the machine each stage uses, on any device: the FLOPs of one step of ours are counted
with torch.utils.flop_counter's formulas (matrix products and convolutions, their backward and, for
OverLORD's synthesis, the R1 penalty's double backward: a plain dispatch mode sums the formulas over
every operator the step runs, without FlopCounterMode's module tracker, which a double backward
trips), over the step time: the achieved FLOP/s. The same worker process then times square
bf16 and float32 matrix products (sides 512, 1024 and 2048 by default, big enough to keep every core
busy; the best rate of 5 runs of each), right after the stage, so that both see the same machine
and the same load: the attainable rates. `share` is the achieved rate over the attainable rate of
the precision the step ran in, `share_bf16` over the bf16 rate. On a GPU `mfu` is also given against the datasheet's dense bf16
peak (PEAK_BF16 below). Every measurement records the 1-minute load average when it ran.

    python benchmarks/bench_train.py --quick              # CPU presets and small scaling sizes (minutes)
    python benchmarks/bench_train.py --json results.json  # the papers' sizes too
    python benchmarks/bench_train.py --quick --parts compile  # ours eager against runtime.compile=true
                                                          # (and CUDA graphs on a GPU)

The perceptual loss runs with VGG16 weights drawn at random in torchvision's layout: the speed of a
convolution does not depend on its weights, and no download is needed.
"""

import argparse
import datetime
import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Peak dense bf16 rates (FLOP/s) for MFU, by device-name substring (vendor datasheets, SXM parts).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "4090": 165e12}

# (stage, config, image size, batch size (None: the preset's), images in the set)
PAPER_CASES = [
    ("lord-latent", "lord", 64, 128, 4096),
    ("lord-encoders", "lord", 64, 64, 4096),
    ("overlord-latent", "overlord-celeba", 128, 32, 2048),
    ("overlord-latent", "overlord-ffhq", 256, 32, 1024),
    ("overlord-synthesis", "overlord-celeba", 128, 16, 2048),
    ("overlord-synthesis", "overlord-ffhq", 256, 16, 1024),
]
CPU_CASES = [
    ("lord-latent", "lord-tiny", 32, 64, 4096),
    ("lord-encoders", "lord-tiny", 32, 64, 4096),
    ("overlord-latent", "overlord-tiny", 32, None, 2048),
    ("overlord-synthesis", "overlord-tiny", 32, None, 2048),
]
# The 64x64 paper configuration on the CPU (few steps: each takes seconds).
CPU_PAPER_CASE = ("lord-latent", "lord", 64, 128, 4096)
CELEBA_MEMORY_CASE = ("lord-latent", "lord", 64, 128, 200_000)
PARTS = ("stages", "scaling", "memory", "compile")
DEFAULT_PARTS = ("stages", "scaling", "memory")
# --precision of our path -> runtime.mixed_precision (the reference path is always float32)
PRECISION_SETTING = {"auto": "auto", "float32": "false", "bf16": "true"}
STAGE_OF = {"lord-latent": "latent", "lord-encoders": "amortized", "overlord-latent": "latent",
            "overlord-synthesis": "synthesis"}
BATCH_KEY = {("lord", "latent"): "train", ("lord", "amortized"): "train_encoders",
             ("overlord", "latent"): "disentanglement", ("overlord", "amortized"): "amortization",
             ("overlord", "synthesis"): "synthesis"}


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def fake_vgg_weights():
    """Random VGG16 features in torchvision's layout (speed does not depend on the values)."""
    import torch

    from lord.networks.vgg import vgg16_feature_layers

    path = Path(tempfile.gettempdir()) / "lord-bench-vgg16-random.pth"
    if not path.exists():
        torch.save({f"features.{k}": v for k, v in vgg16_feature_layers().state_dict().items()}, path)
    return path


def make_dataset(n_images, img_size, n_classes=32, seed=0, with_masks=False):
    """Random uint8 images with labels (and masks, which only OverLORD's localized mode reads)."""
    import numpy as np

    from lord.data.store import make_dataset as build

    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, size=(n_images, img_size, img_size, 3), dtype=np.uint8)
    extras = {}
    if with_masks:
        extras["masks"] = np.zeros((n_images, img_size, img_size), np.uint8)
        extras["masks"][:, img_size // 4 : 3 * img_size // 4] = 1
    return build(imgs, np.arange(n_images) % n_classes, n_classes=n_classes, **extras)


def case_config(case, dataset, rows_update=None, compile_=False, precision="auto"):
    import config as presets

    from lord.configuration import apply_overrides
    from lord.training import data_block

    stage_name, config_name, _, batch, _ = case
    cfg = presets.get_config(config_name)
    overrides = []
    if cfg["perceptual_loss"]["type"] == "vgg":
        overrides.append(f"perceptual_loss.weights={fake_vgg_weights()}")
    if batch is not None:
        overrides.append(f"{BATCH_KEY[(cfg['arch'], STAGE_OF[stage_name])]}.batch_size={batch}")
    if rows_update is not None:
        block = "train" if cfg["arch"] == "lord" else "disentanglement"
        overrides.append(f"{block}.embedding_update={'rows' if rows_update else 'dense'}")
    if compile_:
        overrides.append("runtime.compile=true")
    # The same computation as the reference path: without the toolkit's additions to the method that
    # a CPU preset switches on (LORD stage 2's translated share, OverLORD stage 3's generator average).
    if cfg["arch"] == "lord":
        overrides.append("train_encoders.translated_fraction=0")
    else:
        overrides.append("synthesis.ema.enabled=false")
    overrides.append(f"runtime.mixed_precision={PRECISION_SETTING[precision]}")
    cfg = apply_overrides(cfg, overrides)
    cfg["data"] = data_block("bench", dataset, cfg)
    return cfg


def build_ours(case, device, n_images=None, rows_update=None, compile_=False, precision="auto"):
    """Our stage object for a case, on random data of the case's size, from fresh weights."""
    import torch

    from lord.model import stage_module_class
    from lord.training import build_stage

    dataset = make_dataset(n_images or case[4], case[2], with_masks=case[0].startswith("overlord"))
    cfg = case_config(case, dataset, rows_update, compile_, precision)
    stage = STAGE_OF[case[0]]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as model_dir:
        for previous in {"latent": [], "amortized": ["latent"], "synthesis": ["latent", "amortized"]}[stage]:
            torch.save(stage_module_class(cfg, previous)(cfg).state_dict(), Path(model_dir) / f"{previous}.pt")
        return build_stage(stage, cfg, dataset, device, 0, Path(model_dir))


class StepFlops:
    """Sums torch.utils.flop_counter's per-operator formulas over what runs in its context.

    FlopCounterMode's module tracker fails on a double backward (the R1 penalty); this counts the
    same operators with the same formulas, totals only."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.flop_counter import flop_registry

        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                formula = flop_registry.get(func._overloadpacket)
                if formula is not None:
                    flops = formula(*args, **kwargs, out_val=out)
                    counter.total += flops
                    name = str(func._overloadpacket)
                    counter.by_operator[name] = counter.by_operator.get(name, 0) + flops
                return out

        self.mode = Mode()
        self.total = 0
        self.by_operator = {}

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


def attainable_rates(device, size=2048, runs=5):
    """FLOP/s of square matrix products in bf16 and in float32 on `device`: the best of `runs` timed
    products at each of the sides size/4, size/2 and size (a CPU with AMX peaks below the largest),
    in this process, under whatever load the machine has now."""
    import torch

    rates = {}
    for name, dtype in (("bf16", torch.bfloat16), ("float32", torch.float32)):
        best = 0.0
        for side in (max(1, size // 4), max(1, size // 2), size):
            generator = torch.Generator().manual_seed(0)
            a = torch.randn(side, side, generator=generator).to(device, dtype)
            b = torch.randn(side, side, generator=generator).to(device, dtype)
            for index in range(runs + 1):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                torch.mm(a, b)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if index:  # the first product warms up
                    best = max(best, 2 * side**3 / (time.perf_counter() - start))
        rates[name] = best
    return rates


def load_average():
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def timed_steps(step, device, warmup, steps):
    import torch

    times, cpu_times = [], []
    for index in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        step(index)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if index >= warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    return statistics.median(times), statistics.median(cpu_times)


def run_ours(case, device, warmup, steps, n_images=None, rows_update=None, count_flops=False, compile_=False,
             precision="auto", peak_size=2048):
    import torch

    from lord.training.loop import Batch

    stage = build_ours(case, device, n_images, rows_update, compile_, precision)
    order = torch.randperm(stage.n_images, generator=torch.Generator().manual_seed(0)).to(device)
    batches = stage.n_images // stage.batch_size

    def step(index):
        position = index % batches
        indices = order[position * stage.batch_size : (position + 1) * stage.batch_size]
        stage.train_step(Batch(indices, indices, stage.batch_size), index, 10**6)

    seconds, cpu_seconds = timed_steps(step, device, warmup, steps)
    result = {"img_s": stage.batch_size / seconds, "step_ms": seconds * 1e3, "cpu_ms": cpu_seconds * 1e3,
              "batch_size": stage.batch_size, "precision": "bf16" if stage.amp else "float32"}
    if count_flops:
        # a compiled step runs inductor's kernels, which the counter does not see: count the eager step
        counted = stage if not compile_ else build_ours(case, device, n_images, rows_update, False, precision)
        with StepFlops() as counter:
            counted.train_step(Batch(order[: stage.batch_size], order[: stage.batch_size], stage.batch_size),
                               warmup + steps, 10**6)
        result["flops_per_step"] = counter.total
        result["flops_by_operator"] = counter.by_operator
        rates = attainable_rates(device, peak_size)
        result["attainable_bf16"], result["attainable_float32"] = rates["bf16"], rates["float32"]
    return result


class ReferenceTrainer:
    """One stage trained the way the original code does it, on the toolkit's networks."""

    def __init__(self, case, device, reference_layers="original"):
        import torch
        from torch.utils.data import DataLoader, Dataset

        from lord.model import stage_module_class
        from lord.weights import reconstruction_loss
        from original_formulation import use_original_formulation

        dataset = make_dataset(case[4], case[2], with_masks=case[0].startswith("overlord"))
        self.cfg = cfg = case_config(case, dataset)
        self.stage = stage = STAGE_OF[case[0]]
        self.arch = cfg["arch"]
        self.device = device
        images = torch.from_numpy(dataset.imgs).permute(0, 3, 1, 2).float() / 255.0  # the float32 copy
        classes = torch.from_numpy(dataset.classes)
        del dataset

        class PerSample(Dataset):
            def __len__(self):
                return len(images)

            def __getitem__(self, index):
                return {"img": images[index], "img_id": index, "class_id": classes[index]}

        torch.manual_seed(0)
        self.loss_fn = reconstruction_loss(cfg["perceptual_loss"]).to(device)
        block = cfg[BATCH_KEY[(self.arch, stage)]]
        self.batch_size = block["batch_size"]
        self.model = stage_module_class(cfg, stage)(cfg).to(device)
        if stage != "latent":
            self.targets = stage_module_class(cfg, "latent")(cfg).to(device).requires_grad_(False)
        if self.arch == "overlord" and reference_layers == "original":
            # the StyleGAN2 layers as the published code computes them (benchmarks/original_formulation.py)
            use_original_formulation(self.model, device.type)
            if stage != "latent":
                use_original_formulation(self.targets, device.type)
        if stage == "synthesis":
            discriminator = self.model.discriminator
            generator_side = [p for name, p in self.model.named_parameters()
                              if not name.startswith(("discriminator.", "generator_ema."))]
            self.optimizer = torch.optim.Adam(generator_side, lr=1e-4, betas=(0.0, 0.99))
            self.discriminator_optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-4, betas=(0.0, 0.99))
        else:
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4, betas=(0.5, 0.999))
        self.loader = DataLoader(PerSample(), batch_size=self.batch_size, shuffle=True, num_workers=1,
                                 drop_last=True, pin_memory=device.type == "cuda", persistent_workers=True)
        self.batches = iter(())

    def next_batch(self):
        try:
            return next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            return next(self.batches)

    def codes(self, data):
        """The code the generator takes, computed the reference way for this stage."""
        import torch

        model, cfg = self.model, self.cfg
        if self.arch == "lord":
            if self.stage == "latent":
                content = model.content_embedding(data["img_id"])
                return content + torch.randn_like(content) * cfg["content_std"], model.class_embedding(data["class_id"])
            return model.content_encoder(data["img"]), model.class_encoder(data["img"])
        if self.stage == "latent":
            uncorrelated = model.uncorrelated_embedding(data["img_id"])
            noisy = uncorrelated + torch.randn_like(uncorrelated) * cfg["uncorrelated_std"]
            return torch.cat([model.label_embedding(data["class_id"]), noisy], dim=1)
        label, _, uncorrelated = model.encode(data["img"])
        return torch.cat([label, uncorrelated], dim=1)

    def step(self, _):
        import torch.nn.functional as F

        from lord.networks.gan_losses import discriminator_adversarial_loss, generator_adversarial_loss, r1_penalty

        data = {key: value.to(self.device) for key, value in self.next_batch().items()}
        img = data["img"]
        codes = self.codes(data)
        generated = self.model.generator(*codes) if self.arch == "lord" else self.model.generator(codes)
        loss = self.loss_fn(generated, img).mean()
        if self.stage == "amortized" and self.arch == "lord":
            loss = loss + 10 * F.mse_loss(codes[0], self.targets.content_embedding(data["img_id"]))
            loss = loss + 10 * F.mse_loss(codes[1], self.targets.class_embedding(data["class_id"]))
        if self.stage == "synthesis":
            loss = loss + generator_adversarial_loss(self.model.discriminator(generated)).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        loss.item()
        if self.stage == "synthesis":
            real = img.detach().requires_grad_(True)
            real_logits = self.model.discriminator(real)
            d_loss = (discriminator_adversarial_loss(real_logits, self.model.discriminator(generated.detach())).mean()
                      + 10 * r1_penalty(real, real_logits).mean())
            self.discriminator_optimizer.zero_grad()
            d_loss.backward()
            self.discriminator_optimizer.step()
            d_loss.item()


def run_reference(case, device, warmup, steps, reference_layers="original"):
    trainer = ReferenceTrainer(case, device, reference_layers)
    seconds, cpu_seconds = timed_steps(trainer.step, device, warmup, steps)
    return {"img_s": trainer.batch_size / seconds, "step_ms": seconds * 1e3, "cpu_ms": cpu_seconds * 1e3,
            "batch_size": trainer.batch_size}


def worker(args):
    """One measurement in this process; prints one JSON line."""
    import torch

    from lord.training.data import resolve_device

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compile and (args.compile_mode != "default" or args.compile_backend != "inductor"):
        # the stages call torch.compile(module): this measurement's mode or backend, in this process only
        options = {"backend": args.compile_backend}
        if args.compile_mode != "default":
            options["mode"] = args.compile_mode
        torch.compile = functools.partial(torch.compile, **options)
    case = tuple(json.loads(args.case))
    if args.path == "ours":
        result = run_ours(case, device, args.warmup, args.steps, args.n_images, rows_update=args.rows_update,
                          count_flops=args.n_images is None, compile_=args.compile, precision=args.precision,
                          peak_size=args.peak_size)
    else:
        result = run_reference(case, device, args.warmup, args.steps, args.reference_layers)
    result["peak_rss_mb"] = peak_rss_mb()
    result["load_average"] = load_average()
    if device.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    print("RESULT " + json.dumps(result))


def measure(case, path, options, n_images=None, rows_update=None, warmup=None, steps=None, compile_=None,
            compile_mode=None):
    command = [sys.executable, __file__, "--worker", "--path", path, "--case", json.dumps(case),
               "--device", options.device, "--warmup", str(warmup or options.warmup),
               "--steps", str(steps or options.steps), "--peak-size", str(getattr(options, "peak_size", 2048))]
    if options.threads:
        command += ["--threads", str(options.threads)]
    if n_images:
        command += ["--n-images", str(n_images)]
    if rows_update is not None:
        command += ["--rows-update" if rows_update else "--dense-update"]
    if (options.compile if compile_ is None else compile_) and path == "ours":
        command += ["--compile", "--compile-mode", compile_mode or "default",
                    "--compile-backend", getattr(options, "compile_backend", "inductor")]
    command += ["--precision", getattr(options, "precision", "auto")]
    if path == "reference":
        command += ["--reference-layers", getattr(options, "reference_layers", "original")]
    # Both paths in the caller's environment (OpenMP's default wait policy unless it sets one), as
    # `python lord.py` and the original code run.
    completed = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"benchmark worker failed for {case} ({path}):\n{completed.stderr[-3000:]}")


def device_description(device_name):
    import torch

    from lord.training.data import resolve_device

    device = resolve_device(device_name)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores), torch {torch.__version__}"


def repeated(case, options, repeats, steps=None, warmup=None):
    """(ours, reference) measurements, each run `repeats` times alternately (so that a slow spell of a
    shared machine hits both paths alike): the median speed and the largest peak memory."""
    runs = {"ours": [], "reference": []}
    for _ in range(repeats):
        for path in runs:
            runs[path].append(measure(case, path, options, warmup=warmup, steps=steps))

    def combine(results):
        combined = dict(results[0])
        combined["img_s"] = statistics.median(result["img_s"] for result in results)
        combined["step_ms"] = statistics.median(result["step_ms"] for result in results)
        combined["cpu_ms"] = statistics.median(result["cpu_ms"] for result in results)
        combined["load_averages"] = [result["load_average"] for result in results]
        for key in ("attainable_bf16", "attainable_float32"):
            if key in combined:
                combined[key] = statistics.median(result[key] for result in results)
        for key in ("peak_rss_mb", "peak_cuda_mb"):
            if key in combined:
                combined[key] = max(result[key] for result in results)
        return combined

    return combine(runs["ours"]), combine(runs["reference"])


def compare(case, options, steps=None, warmup=None, repeats=1):
    ours, reference = repeated(case, options, repeats, steps=steps, warmup=warmup)
    row = {
        "stage": case[0], "config": case[1], "img_size": case[2], "batch_size": ours["batch_size"],
        "ours_img_s": round(ours["img_s"], 2), "reference_img_s": round(reference["img_s"], 2),
        "speed_ratio": round(ours["img_s"] / reference["img_s"], 3), "ours_precision": ours["precision"],
        # CPU time of the main process per step: robust to other load, blind to the reference's
        # loader worker (which the wall-clock ratio counts where it stalls the step)
        "ours_cpu_ms": round(ours["cpu_ms"], 2), "reference_cpu_ms": round(reference["cpu_ms"], 2),
        "cpu_time_ratio": round(reference["cpu_ms"] / ours["cpu_ms"], 3),
        "ours_peak_rss_mb": round(ours["peak_rss_mb"], 1), "reference_peak_rss_mb": round(reference["peak_rss_mb"], 1),
        "memory_ratio": round(ours["peak_rss_mb"] / reference["peak_rss_mb"], 3),
        "ours_peak_cuda_mb": ours.get("peak_cuda_mb"), "reference_peak_cuda_mb": reference.get("peak_cuda_mb"),
    }
    row.update(flop_fields(ours, options.device))
    row["load_averages"] = ours["load_averages"] + reference["load_averages"]
    print(f"{case[0]:19} {case[1]:16} {case[2]:4} {row['ours_img_s']:10.1f} {row['reference_img_s']:10.1f} "
          f"{row['speed_ratio']:6.2f} {row['ours_peak_rss_mb']:9.0f} {row['reference_peak_rss_mb']:9.0f} "
          f"{row['memory_ratio']:6.2f} {row['cpu_time_ratio']:6.2f}{flop_columns(row)}"
          f"  load {max(row['load_averages']):.1f}", flush=True)
    return row


def compile_variants(device_name):
    """(label, torch.compile mode) of the compiled paths to measure: inductor, and on CUDA inductor
    with CUDA graphs (mode reduce-overhead) as well."""
    variants = [("compiled", "default")]
    if not device_description(device_name).startswith("CPU"):
        variants.append(("cudagraphs", "reduce-overhead"))
    return variants


def compile_against_eager(case, options):
    """Our stage eager and on every compiled path, measured alternately `options.repeats` times:
    medians, shares (and MFU on a GPU), and each compiled path's speed over eager. A compiled path
    that fails is recorded with its error's last line; the eager path must not fail."""
    variants = [("eager", None)] + compile_variants(options.device)
    runs = {label: [] for label, _ in variants}
    errors = {}
    for _ in range(options.repeats):
        for label, mode in variants:
            if label in errors:
                continue
            try:
                runs[label].append(measure(case, "ours", options, compile_=mode is not None, compile_mode=mode))
            except RuntimeError as error:
                if mode is None:
                    raise
                errors[label] = str(error).strip().splitlines()[-1]
    row = {"stage": case[0], "config": case[1], "img_size": case[2], "batch_size": runs["eager"][0]["batch_size"],
           "precision": runs["eager"][0]["precision"],
           "load_averages": [result["load_average"] for results in runs.values() for result in results]}
    summary = []
    for label, _ in variants:
        if label in errors:
            row[f"{label}_error"] = errors[label]
            summary.append(f"{label} failed")
            continue
        ours = dict(runs[label][0])
        for key in ("img_s", "step_ms", "cpu_ms", "attainable_bf16", "attainable_float32"):
            ours[key] = statistics.median(result[key] for result in runs[label])
        fields = flop_fields(ours, options.device)
        row[f"{label}_img_s"] = round(ours["img_s"], 2)
        row[f"{label}_cpu_ms"] = round(ours["cpu_ms"], 2)
        row[f"{label}_share"] = fields["share"]
        if "mfu" in fields:
            row[f"{label}_mfu"] = fields["mfu"]
        if label != "eager":
            row[f"{label}_speedup"] = round(row[f"{label}_img_s"] / row["eager_img_s"], 3)
            # CPU time per step of the process: what other load on the machine moves less than the wall clock
            row[f"{label}_cpu_time_speedup"] = round(row["eager_cpu_ms"] / row[f"{label}_cpu_ms"], 3)
        summary.append(f"{label} {row[f'{label}_img_s']:.1f} img/s ({row[f'{label}_share']:.1%})"
                       + (f" {row[f'{label}_speedup']:.2f}x, CPU time {row[f'{label}_cpu_time_speedup']:.2f}x"
                          if label != "eager" else ""))
    print(f"  {case[0]:19} {case[1]:16} " + ", ".join(summary) + f"  load {max(row['load_averages']):.1f}",
          flush=True)
    return row


def flop_fields(ours, device_name):
    """FLOPs per step, achieved GFLOP/s and shares of the attainable rates from one of our measurements."""
    if "flops_per_step" not in ours:
        return {}
    achieved = ours["flops_per_step"] / (ours["step_ms"] / 1e3)
    attainable = ours["attainable_bf16"] if ours["precision"] == "bf16" else ours["attainable_float32"]
    fields = {
        "gflop_per_step": round(ours["flops_per_step"] / 1e9, 4), "gflop_s": round(achieved / 1e9, 2),
        "attainable_bf16_gflop_s": round(ours["attainable_bf16"] / 1e9, 1),
        "attainable_float32_gflop_s": round(ours["attainable_float32"] / 1e9, 1),
        "share": round(achieved / attainable, 4), "share_bf16": round(achieved / ours["attainable_bf16"], 4),
    }
    description = device_description(device_name)
    if not description.startswith("CPU"):
        peak = next((rate for key, rate in PEAK_BF16.items() if key in description), None)
        fields["tflops"] = round(achieved / 1e12, 2)
        fields["mfu"] = round(achieved / peak, 4) if peak else None
    return fields


def flop_columns(row):
    if "share" not in row:
        return ""
    text = f" {row['gflop_per_step']:9.3f} {row['gflop_s']:8.1f} {row['share']:6.1%}"
    return text + (f"  MFU {row['mfu']:.1%}" if row.get("mfu") else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CPU presets and small scaling sizes only (minutes)")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="measurements of each path per case, alternating, median taken (default 3; the "
                             "CPU run of the 64x64 paper size is measured once)")
    parser.add_argument("--threads", type=int, help="torch threads in each measurement (default: torch's)")
    parser.add_argument("--compile", action="store_true",
                        help="run our stages with runtime.compile=true (torch.compile; warm-up steps include "
                             "the compilation)")
    parser.add_argument("--precision", default="auto", choices=sorted(PRECISION_SETTING),
                        help="our path's runtime.mixed_precision: auto (the default: bf16 on CUDA and on CPUs "
                             "with native bf16), float32 or bf16; the reference path is float32")
    parser.add_argument("--reference-layers", default="original", choices=["original", "toolkit"],
                        help="how the reference path computes OverLORD's StyleGAN2 layers: as the published "
                             "code does (the default; benchmarks/original_formulation.py) or with the "
                             "toolkit's layers")
    parser.add_argument("--stages", nargs="+", choices=sorted(STAGE_OF),
                        help="measure only these stages (default: all)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(DEFAULT_PARTS),
                        help="what to measure: the stages' speed and memory against the reference, the step "
                             "time against the number of images, the peak memory with a CelebA-sized set "
                             "(default: these three; the last is skipped with --quick), and, only when named, "
                             "our stages eager against runtime.compile=true, alternating")
    parser.add_argument("--peak-size", type=int, default=2048,
                        help="largest side of the square matrix products that measure the attainable bf16 and "
                             "float32 rates (also a half and a quarter of it; default 2048: enough to keep "
                             "every core of a CPU busy)")
    parser.add_argument("--compile-stages", nargs="+", choices=sorted(STAGE_OF),
                        help="the stages the compile part measures (default: those of --stages)")
    parser.add_argument("--compile-backend", default="inductor", choices=["inductor", "eager"],
                        help="torch.compile backend of compiled measurements (default inductor; eager only "
                             "traces, which checks the plumbing quickly and measures nothing)")
    parser.add_argument("--compile-mode", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--n-images", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rows-update", dest="rows_update", action="store_true", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dense-update", dest="rows_update", action="store_false", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    description = device_description(args.device)
    on_gpu = not description.startswith("CPU")
    report = {"device": description, "date": datetime.date.today().isoformat(), "quick": args.quick,
              "compile": args.compile, "compile_backend": args.compile_backend, "threads": args.threads, "precision": args.precision,
              "reference_layers": args.reference_layers,
              "repeats": args.repeats, "steps": args.steps, "warmup": args.warmup,
              "load_average_at_start": load_average(), "stages": [], "scaling": [], "memory": None,
              "compile_against_eager": []}
    print(f"device: {description}, ours in precision {args.precision}"
          + (", with torch.compile" if args.compile else ""))
    print(f"{'stage':19} {'config':16} {'size':>4} {'ours img/s':>10} {'ref img/s':>10} {'speed':>6} "
          f"{'ours MB':>9} {'ref MB':>9} {'memory':>6} {'cpu t':>6} {'GFLOP/st':>9} {'GFLOP/s':>8} {'share':>6}")
    for case in CPU_CASES + ([] if args.quick else PAPER_CASES if on_gpu else [CPU_PAPER_CASE]):
        if "stages" not in args.parts or args.stages and case[0] not in args.stages:
            continue
        slow = not on_gpu and case[1] == "lord"
        report["stages"].append(compare(case, args, steps=3 if slow else None, warmup=1 if slow else None,
                                        repeats=1 if slow else args.repeats))

    if "compile" in args.parts:
        print(f"\nour stages eager and with runtime.compile=true, alternating, median of {args.repeats}:")
        chosen = args.compile_stages or args.stages
        for case in (PAPER_CASES if on_gpu and not args.quick else CPU_CASES):
            if not chosen or case[0] in chosen:
                report["compile_against_eager"].append(compile_against_eager(case, args))

    scaling_case = PAPER_CASES[0] if on_gpu and not args.quick else CPU_CASES[0]
    sizes = [10**4, 10**5] if args.quick else [10**4, 10**5, 10**6]
    if "scaling" not in args.parts:
        sizes = []
    if sizes:
        print(f"\nstep time against the number of images ({scaling_case[1]}, batch {scaling_case[3]}):")
    for n_images in sizes:
        entry = {"n_images": n_images}
        for label, rows in (("rows", True), ("dense", False)):
            times = [measure(scaling_case, "ours", args, n_images, rows_update=rows)["step_ms"]
                     for _ in range(args.repeats)]
            entry[f"step_ms_{label}"] = round(statistics.median(times), 2)
        entry["step_ms"] = entry["step_ms_rows"]
        report["scaling"].append(entry)
        print(f"  {n_images:>8} images: {entry['step_ms_rows']:8.1f} ms with embedding_update=rows, "
              f"{entry['step_ms_dense']:8.1f} ms with dense", flush=True)

    if not args.quick and "memory" in args.parts:
        print("\npeak host memory with a CelebA-sized set (200,000 images of 64x64x3), 2 timed steps:")
        ours = measure(CELEBA_MEMORY_CASE, "ours", args, warmup=1, steps=2)
        reference = measure(CELEBA_MEMORY_CASE, "reference", args, warmup=1, steps=2)
        report["memory"] = {
            "n_images": CELEBA_MEMORY_CASE[4], "ours_peak_rss_mb": round(ours["peak_rss_mb"], 1),
            "reference_peak_rss_mb": round(reference["peak_rss_mb"], 1),
            "memory_ratio": round(ours["peak_rss_mb"] / reference["peak_rss_mb"], 3),
        }
        print(f"  ours {ours['peak_rss_mb']:.0f} MB, reference {reference['peak_rss_mb']:.0f} MB, "
              f"ratio {report['memory']['memory_ratio']:.2f}")
    write_report(report, args.json)


def write_report(report, path):
    if path:
        Path(path).write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
