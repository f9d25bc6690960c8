#!/usr/bin/env python3
"""One stage of ours measured alternately in two checkouts of the toolkit: a change's before and after
in the same run, under the same load.

Each measurement is bench_train.py's worker run from its own checkout (its code, its networks),
alternating before / after `--repeats` times; the medians of the images per second and of the CPU time
per step (which other load on the machine moves less than the wall clock) give the ratios, and
every measurement's load average is kept.

    git worktree add /tmp/before <commit>   # or any copy of an older checkout
    python benchmarks/compare_checkouts.py --before /tmp/before --after . --stages overlord-synthesis
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def measure(checkout, case, args, extra):
    command = [sys.executable, str(checkout / "benchmarks" / "bench_train.py"), "--worker", "--path", "ours",
               "--case", json.dumps(case), "--device", "cpu", "--warmup", str(args.warmup),
               "--steps", str(args.steps), "--precision", args.precision, *extra]
    if args.threads:
        command += ["--threads", str(args.threads)]
    environment = dict(os.environ, PYTHONPATH=str(checkout))
    completed = subprocess.run(command, capture_output=True, text=True, cwd=checkout, env=environment)
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise SystemExit(f"error: the measurement failed in {checkout}:\n{completed.stderr[-2000:]}")


def main():
    from bench_train import CPU_CASES, STAGE_OF

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, type=Path, help="the checkout before the change")
    parser.add_argument("--after", required=True, type=Path, help="the checkout after the change")
    parser.add_argument("--stages", nargs="+", choices=sorted(STAGE_OF), help="stages (default: all)")
    parser.add_argument("--repeats", type=int, default=5, help="measurements of each checkout (default 5)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bf16"],
                        help="runtime.mixed_precision of both (default auto)")
    parser.add_argument("--threads", type=int,
                        help="torch threads in each measurement (default: torch's; 1 keeps a loaded machine's "
                             "stalls of waiting threads out of the ratio)")
    parser.add_argument("--compile-after", action="store_true", help="the after checkout with runtime.compile=true")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    rows = []
    for case in CPU_CASES:
        if args.stages and case[0] not in args.stages:
            continue
        runs = {"before": [], "after": []}
        for _ in range(args.repeats):
            runs["before"].append(measure(args.before.resolve(), case, args, []))
            runs["after"].append(measure(args.after.resolve(), case, args, ["--compile"] if args.compile_after else []))
        row = {"stage": case[0], "config": case[1], "loads": [r["load_average"] for rs in runs.values() for r in rs]}
        for label, results in runs.items():
            row[f"{label}_img_s"] = round(statistics.median(r["img_s"] for r in results), 2)
            row[f"{label}_cpu_ms"] = round(statistics.median(r["cpu_ms"] for r in results), 2)
            achieved = [r["flops_per_step"] / (r["step_ms"] / 1e3) for r in results]
            attainable = [r["attainable_bf16" if r["precision"] == "bf16" else "attainable_float32"] for r in results]
            row[f"{label}_share"] = round(statistics.median(a / b for a, b in zip(achieved, attainable)), 4)
        row["speedup"] = round(row["after_img_s"] / row["before_img_s"], 3)
        row["cpu_time_speedup"] = round(row["before_cpu_ms"] / row["after_cpu_ms"], 3)
        rows.append(row)
        print(f"{case[0]:19} {case[1]:14} before {row['before_img_s']:8.1f} img/s ({row['before_share']:.1%}), after "
              f"{row['after_img_s']:8.1f} img/s ({row['after_share']:.1%}): {row['speedup']:.2f}x, CPU time "
              f"{row['cpu_time_speedup']:.2f}x; load {min(row['loads']):.1f}-{max(row['loads']):.1f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"repeats": args.repeats, "steps": args.steps, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
