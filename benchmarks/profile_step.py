#!/usr/bin/env python3
"""Where one training step's time goes: torch.profiler over a few steps of one of our stages.

Splits the step's wall time into the matrix products and convolutions (forward and backward), the
other operators (elementwise passes, reductions, copies, the optimizer) and what no operator
accounts for (Python, dispatch, waiting), and lists the operators that take the most time. The
stages are the benchmark's (benchmarks/bench_train.py: random data, random VGG16 weights).

    python benchmarks/profile_step.py --stage overlord-latent
    python benchmarks/profile_step.py --stage lord-latent --config lord --img-size 64 --batch-size 128 --steps 1
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Operators whose own time is the arithmetic the FLOP count measures (CPU kernels of oneDNN / BLAS).
ARITHMETIC = ("conv", "mm", "matmul", "linear", "mkldnn", "bmm", "addmm", "baddbmm")


def is_arithmetic(name):
    return any(key in name.lower() for key in ARITHMETIC)


def profile(case, warmup, steps, compile_=False, precision="auto", rows=15):
    import torch
    from torch.profiler import ProfilerActivity, profile as torch_profile

    from bench_train import build_ours
    from lord.training.loop import Batch

    device = torch.device("cpu")
    stage = build_ours(case, device, compile_=compile_, precision=precision)
    order = torch.randperm(stage.n_images, generator=torch.Generator().manual_seed(0))

    def step(index):
        position = index % (stage.n_images // stage.batch_size)
        indices = order[position * stage.batch_size:(position + 1) * stage.batch_size]
        stage.train_step(Batch(indices, indices, stage.batch_size), index, 10**6)

    for index in range(warmup):
        step(index)
    with torch_profile(activities=[ProfilerActivity.CPU]) as profiler:
        started = time.perf_counter()
        for index in range(warmup, warmup + steps):
            step(index)
        wall_us = (time.perf_counter() - started) * 1e6
    events = profiler.key_averages()
    arithmetic = sum(event.self_cpu_time_total for event in events if is_arithmetic(event.key))
    operators = sum(event.self_cpu_time_total for event in events)
    calls = sum(event.count for event in events if event.key.startswith("aten::"))
    summary = {
        "stage": case[0], "config": case[1], "batch_size": stage.batch_size, "step_ms": wall_us / steps / 1e3,
        "arithmetic_ms": arithmetic / steps / 1e3, "other_operators_ms": (operators - arithmetic) / steps / 1e3,
        "outside_operators_ms": max(0.0, wall_us - operators) / steps / 1e3, "aten_calls": calls // steps,
    }
    top = sorted(events, key=lambda event: event.self_cpu_time_total, reverse=True)[:rows]
    return summary, [(event.key, event.count // steps, event.self_cpu_time_total / steps / 1e3) for event in top]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True,
                        choices=["lord-latent", "lord-encoders", "overlord-latent", "overlord-synthesis"])
    parser.add_argument("--config", help="preset (default: lord-tiny or overlord-tiny)")
    parser.add_argument("--img-size", type=int, default=32, help="image size (default 32)")
    parser.add_argument("--batch-size", type=int, help="batch size (default: 64 for LORD, the preset's for OverLORD)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--steps", type=int, default=5, help="profiled steps (default 5)")
    parser.add_argument("--compile", action="store_true", help="with runtime.compile=true")
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bf16"],
                        help="runtime.mixed_precision of the stage (default auto)")
    parser.add_argument("--rows", type=int, default=15, help="operators listed (default 15)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    lord = args.stage.startswith("lord")
    config = args.config or ("lord-tiny" if lord else "overlord-tiny")
    batch = args.batch_size or (64 if lord else None)
    summary, top = profile((args.stage, config, args.img_size, batch, 2048), args.warmup, args.steps,
                           args.compile, args.precision, args.rows)
    step = summary["step_ms"]
    print(f"{summary['stage']} {summary['config']} batch {summary['batch_size']}: {step:.1f} ms a step, "
          f"{summary['aten_calls']} aten calls")
    for key, label in (("arithmetic_ms", "matrix products and convolutions"),
                       ("other_operators_ms", "other operators"), ("outside_operators_ms", "outside any operator")):
        print(f"  {label:34} {summary[key]:8.1f} ms  {summary[key] / step:6.1%}")
    print(f"\n  {'operator (own time)':44} {'calls':>6} {'ms/step':>8}")
    for name, count, ms in top:
        print(f"  {name[:44]:44} {count:6d} {ms:8.2f}")


if __name__ == "__main__":
    main()
