#!/usr/bin/env python3
"""The GPU check (run by benchmarks/gpu_check.sh): every stage of LORD and OverLORD trained for a few
steps at the papers' sizes with the default runtime settings (float32 as the paper presets train,
channels_last, fused Adam) and again in bf16 autocast (`runtime.mixed_precision=true`), then the
training benchmark's GPU cases with model FLOPs utilisation (MFU), each of them eager, compiled
(runtime.compile=true: torch.compile, inductor) and compiled with CUDA graphs (torch.compile's
reduce-overhead mode), alternating, with the MFU of each; one table at the end, and the bf16 speed of
every stage relative to float32. A compiled path that fails is shown as failed in the table (with its
error in the JSON), not hidden.

Random images stand in for the datasets and random VGG16 weights for the perceptual loss (speed does
not depend on either). Any error stops the check with a non-zero exit.

    python benchmarks/gpu_check.py                          # on a CUDA machine
    python benchmarks/gpu_check.py --device cpu --dry-run   # the same steps at CPU-preset sizes

The dry run measures nothing: one step of each, and the compiled path of one stage traced with
torch.compile's eager backend (no code generation), to check the check quickly.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

# (model, preset, image size, masks): every architecture and correlation mode of the papers.
PAPER_MODELS = [
    ("lord", "lord", 64, False),
    ("overlord-celeba", "overlord-celeba", 128, False),
    ("overlord-ffhq", "overlord-ffhq", 256, False),
    ("overlord-afhq", "overlord-afhq", 256, False),
    ("overlord-celebahq-hair", "overlord-celebahq-hair", 256, True),
]
DRY_RUN_MODELS = [
    ("lord", "lord-tiny", 32, False),
    ("overlord", "overlord-tiny", 32, False),
    ("overlord-pose", "overlord-tiny-pose", 32, False),
    ("overlord-localized", "overlord-tiny-localized", 32, True),
]
BLOCKS = {"lord": ["train", "train_encoders"], "overlord": ["disentanglement", "amortization", "synthesis"]}


def stage_overrides(preset, steps):
    """One epoch of `steps` steps at the preset's batch sizes: (overrides, images needed)."""
    import config as presets

    from bench_train import fake_vgg_weights

    cfg = presets.get_config(preset)
    batches = [cfg[block]["batch_size"] for block in BLOCKS[cfg["arch"]]]
    overrides = [f"{block}.n_epochs=1" for block in BLOCKS[cfg["arch"]]]
    if cfg["perceptual_loss"]["type"] == "vgg":
        overrides.append(f"perceptual_loss.weights={fake_vgg_weights()}")
    if cfg["arch"] == "overlord":
        overrides.append("labeled_attribute=classes")  # random class labels stand in for age, gender...
    return overrides, max(batches) * steps


def train_model(base_dir, name, preset, img_size, with_masks, steps, device, precision=None):
    """Every stage of one model (`precision`: a runtime.mixed_precision value, None for the preset's);
    returns a row per stage."""
    import torch

    from bench_train import make_dataset
    from lord.assets import BaseDir
    from lord.data import store
    from lord.training import train, train_encoders, train_synthesis

    overrides, n_images = stage_overrides(preset, steps)
    if precision is not None:
        overrides.append(f"runtime.mixed_precision={precision}")
    store.save(BaseDir(base_dir).data_path(name), make_dataset(n_images, img_size, n_classes=8,
                                                               with_masks=with_masks))
    stages = [("latent", lambda: train(base_dir, name, name, presets_config(preset), overrides=overrides,
                                       config_name=preset, device=device, quiet=True)),
              ("amortized", lambda: train_encoders(base_dir, name, name, device=device, quiet=True))]
    if preset.startswith("overlord"):
        stages.append(("synthesis", lambda: train_synthesis(base_dir, name, name, device=device, quiet=True)))
    rows = []
    for stage, run in stages:
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        model_dir = run()
        seconds = time.perf_counter() - started
        record = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()
                  if json.loads(line)["stage"] == stage][-1]
        rows.append({
            "what": f"train {stage}", "config": preset, "size": img_size, "seconds": round(seconds, 1),
            "img_s": record["images_per_second"], "precision": record["precision"], "loss": record["loss"],
            "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20) if device.startswith("cuda") else None,
        })
        print(f"  {preset:24} {stage:10} {seconds:7.1f} s  {record['images_per_second']:8.1f} img/s  "
              f"{record['precision']}  loss {record['loss']:.4f}", flush=True)
    return rows


def precision_runs(models, dry_run):
    """(model, precision) pairs: every paper model at its default (float32) and in bf16; a dry run
    trains the first CPU preset in float32 and in bf16, the others at their default (auto)."""
    if dry_run:
        return [(models[0], "false"), (models[0], "true")] + [(model, None) for model in models[1:]]
    return [(model, None) for model in models] + [(model, "true") for model in models]


def precision_ratios(rows):
    """bf16 images per second over float32's, per (config, stage) trained in both."""
    speeds = {}
    for row in rows:
        speeds.setdefault((row["config"], row["what"]), {})[row["precision"]] = row["img_s"]
    return [(config, what, both["bf16"] / both["float32"]) for (config, what), both in speeds.items()
            if "bf16" in both and "float32" in both and both["float32"]]


def presets_config(preset):
    import config as presets

    return presets.get_config(preset)


def run_benchmark(device, dry_run, json_path):
    command = [sys.executable, str(REPO / "benchmarks" / "bench_train.py"), "--device", device, "--json", json_path]
    if dry_run:
        command += ["--quick", "--repeats", "1", "--warmup", "1", "--steps", "1", "--parts", "stages", "compile",
                    "--compile-stages", "overlord-latent", "--compile-backend", "eager", "--peak-size", "256"]
    else:
        command += ["--repeats", "1", "--parts", "stages", "compile"]
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=REPO)
    return json.loads(Path(json_path).read_text())


def table(rows, report):
    lines = [f"device: {report['device']}", "",
             "| what | config | size | seconds | img/s | speed ratio | share | MFU | peak GPU MB | precision |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]

    def cell(value, form="{}"):
        return "" if value is None else form.format(value)

    for row in rows:
        lines.append(f"| {row['what']} | `{row['config']}` | {row['size']} | {row['seconds']} | {row['img_s']} | | | | "
                     f"{cell(row['peak_cuda_mb'])} | {row['precision']} |")
    for row in report["stages"]:
        lines.append(f"| benchmark {row['stage']} | `{row['config']}` | {row['img_size']} | | {row['ours_img_s']} | "
                     f"{row['speed_ratio']} | {cell(row.get('share'), '{:.1%}')} | {cell(row.get('mfu'), '{:.1%}')} | "
                     f"{cell(row.get('ours_peak_cuda_mb'), '{:.0f}')} | {row['ours_precision']} |")
    for row in report.get("compile_against_eager", []):
        for variant in ("eager", "compiled", "cudagraphs"):
            what = f"{variant} {row['stage']}"
            if f"{variant}_error" in row:
                lines.append(f"| {what} | `{row['config']}` | {row['img_size']} | | failed | | | | | |")
            elif f"{variant}_img_s" in row:
                lines.append(f"| {what} | `{row['config']}` | {row['img_size']} | | {row[f'{variant}_img_s']} | "
                             f"{cell(row.get(f'{variant}_speedup'))} | {row[f'{variant}_share']:.1%} | "
                             f"{cell(row.get(f'{variant}_mfu'), '{:.1%}')} | | {row['precision']} |")
    lines += ["", "speed ratio: ours / reference for the benchmark rows, over eager for compiled and cudagraphs; "
              "share: achieved FLOP/s over the bf16 (float32) matrix product rate measured in the same process; "
              "MFU: over the datasheet's dense bf16 peak"]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--dry-run", action="store_true",
                        help="the CPU presets at 32 px, 2 steps a stage, and a one-step benchmark: checks the "
                             "check itself, measures nothing")
    parser.add_argument("--steps", type=int, default=None, help="steps per stage (default 8; 2 with --dry-run)")
    parser.add_argument("--json", default=None, help="write the benchmark's JSON here (default: a temporary file)")
    args = parser.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA device: run on a machine with a GPU, or with --device cpu --dry-run")
    steps = args.steps or (2 if args.dry_run else 8)
    models = DRY_RUN_MODELS if args.dry_run else PAPER_MODELS
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as base_dir:
        print(f"training every stage, {steps} steps each, on {args.device}:", flush=True)
        for (name, preset, img_size, masks), precision in precision_runs(models, args.dry_run):
            label = name if precision is None else f"{name}-{'bf16' if precision == 'true' else 'float32'}"
            rows += train_model(base_dir, label, preset, img_size, masks, steps, args.device, precision)
        json_path = args.json or str(Path(base_dir) / "bench.json")
        report = run_benchmark(args.device, args.dry_run, json_path)
    print()
    print(table(rows, report))
    print("\n| bf16 speed / float32 speed | config | stage |\n|---:|---|---|")
    for config, what, ratio in precision_ratios(rows):
        print(f"| {ratio:.2f} | `{config}` | {what.removeprefix('train ')} |")
    print(f"\ngpu check finished in {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
