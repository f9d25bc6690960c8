#!/usr/bin/env python3
"""Memory of mapped data across processes, preprocess memory, and the time one worker death costs.

Parts (each in fresh subprocesses, measured from outside through /proc/<pid>/smaps_rollup and
/proc/<pid>/smaps, sampled every 0.2 s; a process's figures are taken at the instant the processes'
resident memory summed highest). A process's own memory is its anonymous memory; the pages of a
mapped file belong to the page cache (one copy per machine, dropped under memory pressure), and a
page only one process maps counts as that process's "private" in smaps:

  shared      two CPU processes (torchrun, gloo) train lord-tiny for --shared-seconds on a ~1 GB set of
              16x16 images (about five to a page, so a page is touched early): each process's
              resident, proportional (shared pages divided among their users) and private memory, and
              those of its mapping of the file, once on the file as written (images mapped) and once
              on the same arrays stored compressed (older files: each process reads its own copy).
  scaling     one process trains one epoch on 1,000 and on 100,000 images: its private memory.
  preprocess  `preprocess -di folder` of 20,000 PNG files of 256x256 (generated, then deleted): the
              peak resident memory of the largest process against the output's size.
  restart     two processes under `torchrun --max-restarts 1`; rank 0 is killed with SIGKILL right
              after a checkpoint; the time from the kill to the restarted group's first training step.

    python benchmarks/bench_distributed.py                      # every part (about 15 minutes on 2 CPUs)
    python benchmarks/bench_distributed.py --parts restart --json out.json
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lord.data import mapped, store  # noqa: E402
from lord.training.distributed import process_memory  # noqa: E402

MIB = 2.0**20
TINY = ["adain_dim=16", "final_conv_dim=8", "content_dim=8", "class_dim=8", "encoder.channels=[8,8,8,8,8]",
        "encoder.fc_dim=16", "runtime.n_samples=4", "runtime.mixed_precision=false", "train.n_epochs=1"]


def set_args(*items):
    return [arg for item in list(TINY) + list(items) for arg in ("--set", item)]


def make_set(path, count, size, n_classes=10, seed=0):
    """A preprocessed file of `count` random size x size RGB images, written without holding them in memory."""
    rng = np.random.default_rng(seed)
    spool = mapped.Spool(path.parent, (size, size, 3), np.uint8)
    chunk = max(1, (64 * 2**20) // (size * size * 3))
    for first in range(0, count, chunk):
        spool.append(rng.integers(0, 256, (min(chunk, count - first), size, size, 3), dtype=np.uint8))
    imgs = spool.finish()
    dataset = store.make_dataset(imgs, np.arange(count) % n_classes, n_classes=n_classes)
    store.save(path, dataset)
    return dataset


def cached(path):
    """How much of the file the page cache holds, from util-linux's fincore (None without it)."""
    try:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                             capture_output=True, text=True, check=True).stdout
        return int(out.split()[0])
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return None


def file_memory(pid, path):
    """Resident, proportional and private bytes of the process's mappings of the file at `path`."""
    try:
        lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError:
        return {"rss": 0, "pss": 0, "private": 0}
    totals, inside = {"rss": 0, "pss": 0, "private": 0}, False
    names = {"Rss:": "rss", "Pss:": "pss", "Private_Clean:": "private", "Private_Dirty:": "private"}
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        if not parts[0].endswith(":"):
            inside = line.rstrip().endswith(str(path))
        elif inside and parts[0] in names:
            totals[names[parts[0]]] += int(parts[1]) * 1024
    return totals


def descendants(pid):
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def trainers(root):
    """The processes under `root` (itself included) that run lord.py training."""
    pids = []
    for pid in [root] + descendants(root):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(part.endswith(b"lord.py") for part in command) and b"torch.distributed.run" not in command:
            pids.append(pid)
    return pids


def run_sampled(command, cwd=None, env=None, expect=1, data=None, stop_after=None):
    """Run `command`, sampling its training processes (and their mappings of the file `data`); returns the
    samples (one per process) of the instant where their summed resident memory was highest, once
    `expect` of them were running. With `stop_after`, the run is sent SIGTERM that many seconds after
    they all started (it then saves a checkpoint and stops)."""
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    best, best_total, all_started = None, -1, None
    while process.poll() is None:
        sample = {pid: process_memory(pid) for pid in trainers(process.pid)}
        sample = {pid: value for pid, value in sample.items() if value}
        if data is not None:
            for pid, value in sample.items():
                value.update({f"data_{key}": figure for key, figure in file_memory(pid, data).items()})
        total = sum(value["rss"] for value in sample.values())
        if len(sample) >= expect:
            all_started = all_started or time.monotonic()
            if total > best_total:
                best, best_total = sample, total
            if stop_after is not None and time.monotonic() - all_started > stop_after:
                process.send_signal(signal.SIGTERM)
                stop_after = None
        time.sleep(0.2)
    out, err = process.communicate()
    if process.returncode != 0 and "checkpoint saved" not in err:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{err[-3000:]}")
    return list((best or {}).values())


def environment(**extra):
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **extra)


def torchrun(processes, *args):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            str(REPO / "lord.py"), *args]


def describe(samples):
    return [{key: round(value / MIB, 1) for key, value in sample.items()} for sample in samples]


def part_shared(work, images, size, seconds):
    base = work / "shared"
    path = base / "cache" / "preprocess" / "big.npz"
    path.parent.mkdir(parents=True)
    dataset = make_set(path, images, size)
    old = base / "cache" / "preprocess" / "bigold.npz"
    np.savez_compressed(old, **dataset.arrays())
    del dataset
    file_mib = path.stat().st_size / MIB
    args = ["-q", "-bd", str(base), "train", "-cf", "lord-tiny", *set_args("train.batch_size=1024")]
    results = {"images": images, "image_size": size, "file_mib": round(file_mib, 1), "seconds": seconds}
    for data, label in (("big", "mapped"), ("bigold", "read (older, compressed file)")):
        samples = run_sampled(torchrun(2, *args, "-dn", data, "-mn", f"m-{data}"), env=environment(), expect=2,
                              data=path if data == "big" else old, stop_after=seconds)
        results[data] = describe(samples)
        in_cache = cached(path)
        results[data + "_file_in_page_cache_mib"] = None if in_cache is None else round(in_cache / MIB, 1)
        print(f"shared: 2 processes, {images} images of {size}x{size}x3 ({file_mib:.0f} MiB), {label}, after "
              f"{seconds} s of training: anonymous (own) memory "
              f"{[round(sample['anonymous'] / MIB) for sample in samples]} MiB; the file's pages mapped "
              f"{[round(sample['data_rss'] / MIB) for sample in samples]} MiB, proportional summed "
              f"{sum(sample['data_pss'] for sample in samples) / MIB:.0f} MiB; resident "
              f"{[round(sample['rss'] / MIB) for sample in samples]} MiB, proportional summed "
              f"{sum(sample['pss'] for sample in samples) / MIB:.0f} MiB; page cache holding the mapped file "
              f"{'?' if in_cache is None else round(in_cache / MIB)} MiB", flush=True)
    return results


def part_scaling(work, counts, size):
    base = work / "scaling"
    (base / "cache" / "preprocess").mkdir(parents=True)
    results = {}
    for count in counts:
        make_set(base / "cache" / "preprocess" / f"n{count}.npz", count, size)
        args = ["-q", "-bd", str(base), "--device", "cpu", "train", "-dn", f"n{count}", "-mn", f"n{count}",
                "-cf", "lord-tiny", *set_args("train.batch_size=256")]
        data = base / "cache" / "preprocess" / f"n{count}.npz"
        (sample,) = run_sampled([sys.executable, str(REPO / "lord.py"), *args], env=environment(), data=data)
        results[count] = describe([sample])[0]
        print(f"scaling: 1 process, one epoch on {count} images of {size}x{size}x3 "
              f"({count * size * size * 3 / MIB:.1f} MiB of images): anonymous (own) memory "
              f"{sample['anonymous'] / MIB:.0f} MiB; private {sample['private'] / MIB:.0f} MiB, of it "
              f"{sample['data_private'] / MIB:.1f} MiB the mapped file's pages (page cache, which only this "
              f"process maps); resident {sample['rss'] / MIB:.0f} MiB", flush=True)
    return results


def part_preprocess(work, count, size, workers):
    from PIL import Image

    raw = work / "raw"
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    for index in range(count):
        folder = raw / f"class{index % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        tint = rng.uniform(0.3, 1.0, 3).astype(np.float32)
        image = (ramp[None, :, None] * tint + ramp[:, None, None] * (1 - tint)) / 2
        image[rng.integers(0, size - 32):, rng.integers(0, size - 32):][:32, :32] = rng.integers(0, 256, 3)
        Image.fromarray(image.astype(np.uint8)).save(folder / f"{index:05d}.png", compress_level=1)
    raw_mib = sum(path.stat().st_size for path in raw.rglob("*.png")) / MIB
    base = work / "preprocess"
    started = time.perf_counter()
    command = [sys.executable, str(REPO / "lord.py"), "-q", "-bd", str(base), "preprocess", "-di", "folder",
               "-dp", str(raw), "-dn", "folder", "--img-size", str(size), "--workers", str(workers)]
    measured = subprocess.run([sys.executable, "-c", PEAK_OF_CHILD, *command], env=environment(), check=True,
                              capture_output=True, text=True)
    seconds = time.perf_counter() - started
    peak = int(measured.stdout.split()[-1]) * 1024
    output = (base / "cache" / "preprocess" / "folder.npz").stat().st_size
    shutil.rmtree(raw)
    print(f"preprocess: {count} PNG files of {size}x{size} ({raw_mib:.0f} MiB), {workers} workers: peak resident "
          f"memory of the largest process {peak / MIB:.0f} MiB, output {output / MIB:.0f} MiB "
          f"(ratio {peak / output:.3f}), {seconds:.0f} s", flush=True)
    return {"images": count, "size": size, "peak_mib": round(peak / MIB, 1), "output_mib": round(output / MIB, 1),
            "seconds": round(seconds, 1)}


# Runs a command and prints the peak resident memory (KiB) of the largest process of its tree.
PEAK_OF_CHILD = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""

# The worker the restart part runs: rank 0 of the first attempt stops after its first checkpoint and says
# so; every worker of a restarted group notes the time of its start and of its first training step.
RESTART_WORKER = """
import os, runpy, sys, time
started = time.time()
restart = os.environ["TORCHELASTIC_RESTART_COUNT"] != "0"
import lord.assets
import lord.training.loop
if not restart and os.environ["RANK"] == "0":
    real_atomic_write = lord.assets.atomic_write
    def atomic_write(path, write):
        real_atomic_write(path, write)
        if os.path.basename(str(path)).startswith("checkpoint-"):
            with open(os.environ["MARK"] + ".pid", "w") as flag:
                flag.write(str(os.getpid()))
            time.sleep(600)
    lord.assets.atomic_write = atomic_write
if restart:
    real_run_epoch = lord.training.loop.Run._run_epoch
    def run_epoch(self, *args):
        real_step = self.stage.train_step
        def first_step(*step_args):
            with open(os.environ["MARK"] + f".{os.environ['RANK']}", "w") as flag:
                flag.write(f"{started} {time.time()}")
            self.stage.train_step = real_step
            return real_step(*step_args)
        self.stage.train_step = first_step
        return real_run_epoch(self, *args)
    lord.training.loop.Run._run_epoch = run_epoch
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def part_restart(work, count, size):
    base = work / "restart"
    (base / "cache" / "preprocess").mkdir(parents=True)
    make_set(base / "cache" / "preprocess" / "set.npz", count, size)
    worker = work / "restart_worker.py"
    worker.write_text(RESTART_WORKER)
    mark = work / "restart-mark"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "--max-restarts=1",
               str(worker), str(REPO / "lord.py"), "-q", "-bd", str(base), "train", "-dn", "set", "-mn", "restart",
               "-cf", "lord-tiny", "--checkpoint-steps", "20", *set_args("train.batch_size=256")]
    process = subprocess.Popen(command, env=environment(MARK=str(mark), TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    flag = Path(f"{mark}.pid")
    while not flag.exists() and process.poll() is None:
        time.sleep(0.01)
    if not flag.exists():
        raise SystemExit(f"the run ended before its first checkpoint:\n{process.communicate()[1][-3000:]}")
    time.sleep(0.05)
    killed = time.time()
    os.kill(int(flag.read_text()), signal.SIGKILL)
    out, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"the restarted run failed:\n{err[-3000:]}")
    marks = [Path(f"{mark}.{rank}").read_text().split() for rank in (0, 1)]
    started = min(float(m[0]) for m in marks) - killed
    first_step = max(float(m[1]) for m in marks) - killed
    print(f"restart: {count} images of {size}x{size}x3, 2 processes: from SIGKILL of rank 0 to the restarted "
          f"workers' start {started:.1f} s, to their first training step {first_step:.1f} s", flush=True)
    return {"images": count, "to_start_s": round(started, 2), "to_first_step_s": round(first_step, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="preprocess,shared,scaling,restart",
                        help="comma-separated parts to run (default: all)")
    parser.add_argument("--shared-images", type=int, default=1_400_000, help="images in the ~1 GB set (16x16x3)")
    parser.add_argument("--shared-seconds", type=int, default=60, help="training time of the shared part's runs")
    parser.add_argument("--scaling-images", default="1000,100000", help="set sizes of the scaling part")
    parser.add_argument("--preprocess-images", type=int, default=20_000, help="PNG files for the preprocess part")
    parser.add_argument("--workers", type=int, default=2, help="preprocess decoding processes")
    parser.add_argument("--work-dir", help="where to write the sets (default: a temporary directory, removed)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-distributed-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        for part in args.parts.split(","):
            if part == "shared":
                results[part] = part_shared(work, args.shared_images, 16, args.shared_seconds)
            elif part == "scaling":
                results[part] = part_scaling(work, [int(n) for n in args.scaling_images.split(",")], 16)
            elif part == "preprocess":
                results[part] = part_preprocess(work, args.preprocess_images, 256, args.workers)
            elif part == "restart":
                results[part] = part_restart(work, 20_000, 16)
            else:
                raise SystemExit(f"unknown part {part!r}")
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
