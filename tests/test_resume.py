"""Kill a training run at any moment, resume it, and end with the uninterrupted run's weights."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, set_args
from lord.assets import BaseDir, lock_path

# A wrapper that runs lord.py with every fsync slowed down, and says when a checkpoint is being written,
# so that a kill can land inside a checkpoint write.
SLOW_WRITES = """
import os, sys, time, runpy
real_fsync = os.fsync
def slow_fsync(descriptor):
    target = os.readlink(f"/proc/self/fd/{descriptor}")
    if "checkpoint-" in os.path.basename(target):
        open(os.environ["WRITING_MARKER"], "w").close()
        time.sleep(float(os.environ["WRITE_DELAY"]))
    real_fsync(descriptor)
os.fsync = slow_fsync
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

STAGES = {
    "train": ["train", "-dn", "syn", "-cf", "lord-tiny"],
    "train-encoders": ["train-encoders", "-dn", "syn"],
}
# bf16 autocast forced on (as `auto` picks it on CPUs with native bf16), whatever this CPU has; a
# float32 run is checked on its own below.
OVERRIDES = {
    "train": set_args("train.n_epochs=3", "train.batch_size=32", "runtime.mixed_precision=true"),
    "train-encoders": ["--set", "train_encoders.n_epochs=3", "--set", "train_encoders.batch_size=32"],
}


def start(base, command, model, *extra, slow_writes=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    prefix = [sys.executable, str(REPO / "lord.py")]
    if slow_writes is not None:
        env.update(WRITING_MARKER=str(slow_writes), WRITE_DELAY="1")
        prefix = [sys.executable, "-c", SLOW_WRITES, str(REPO / "lord.py")]
    args = [*prefix, "-q", "-bd", str(base), *STAGES[command], "-mn", model, "--checkpoint-minutes", "0.0005", *extra]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(base, command, model, *extra):
    process = start(base, command, model, *extra)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-2000:]


def weights_file(base, model, command):
    return BaseDir(base).model_dir(model) / ("latent.pt" if command == "train" else "amortized.pt")


def wait_for(path, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, "the run ended before the moment to kill it"
        assert time.monotonic() < deadline
        time.sleep(0.01)


def clone_stage_one(base, source, target):
    """A copy of a model after stage 1, to run stage 2 on."""
    import shutil

    shutil.copytree(BaseDir(base).model_dir(source), BaseDir(base).model_dir(target))
    for name in ("amortized.pt", "checkpoint-amortized.pt"):
        (BaseDir(base).model_dir(target) / name).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def base(tmp_path_factory, synthetic_base):
    import shutil

    base = tmp_path_factory.mktemp("resume")
    shutil.copytree(synthetic_base, base, dirs_exist_ok=True)
    run(base, "train", "reference", *OVERRIDES["train"])
    run(base, "train-encoders", "reference", *OVERRIDES["train-encoders"])
    return base


def assert_same_weights(base, model, command, reference="reference"):
    expected = torch.load(weights_file(base, reference, command), weights_only=True)
    actual = torch.load(weights_file(base, model, command), weights_only=True)
    assert set(actual) == set(expected)
    difference = max((actual[key] - expected[key]).abs().max().item() for key in expected)
    assert difference <= 1e-6


def assert_clean_metrics(base, model, command):
    stage = "latent" if command == "train" else "amortized"
    records = [json.loads(line) for line in (BaseDir(base).model_dir(model) / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["stage"] == stage] == [1, 2, 3]
    reference = [json.loads(line) for line in
                 (BaseDir(base).model_dir("reference") / "metrics.jsonl").read_text().splitlines()]
    for mine, theirs in zip([r for r in records if r["stage"] == stage], [r for r in reference if r["stage"] == stage]):
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-6, abs=1e-9)


# Seconds after the first checkpoint exists (an epoch takes about two), and kills inside a checkpoint
# write (the next one after the first, or one in the second epoch): 5 moments for stage 1, 3 for stage 2.
MOMENTS = [("train", 0.0), ("train", 1.3), ("train", 2.9), ("train", "write"), ("train", "write-late"),
           ("train-encoders", 0.4), ("train-encoders", 1.9), ("train-encoders", "write")]


@pytest.mark.parametrize("command, moment", MOMENTS)
def test_sigkill_then_resume_gives_the_same_weights(base, tmp_path, command, moment):
    model = f"kill-{command}-{moment}"
    if command == "train-encoders":
        clone_stage_one(base, "reference", model)
    checkpoint = BaseDir(base).model_dir(model) / f"checkpoint-{'latent' if command == 'train' else 'amortized'}.pt"
    if isinstance(moment, str):
        marker = tmp_path / "writing"
        process = start(base, command, model, *OVERRIDES[command], slow_writes=marker)
        wait_for(checkpoint, process)
        if moment == "write-late":
            metrics = checkpoint.parent / "metrics.jsonl"
            while len(metrics.read_text().splitlines()) < 2:
                assert process.poll() is None
                time.sleep(0.01)
        marker.unlink(missing_ok=True)
        wait_for(marker, process)
        time.sleep(0.5)  # inside the slowed write, after the temporary file was filled
        assert any(p.name.startswith(".checkpoint-") for p in checkpoint.parent.iterdir())
    else:
        process = start(base, command, model, *OVERRIDES[command])
        wait_for(checkpoint, process)
        time.sleep(moment)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    torch.load(checkpoint, weights_only=True)  # the checkpoint on disk is whole, never torn
    run(base, command, model, "--resume")
    assert_same_weights(base, model, command)
    assert_clean_metrics(base, model, command)
    assert not list(checkpoint.parent.glob(".*tmp*"))


def test_sigint_saves_a_checkpoint_and_says_how_to_resume(base):
    process = start(base, "train", "interrupted", *OVERRIDES["train"])
    wait_for(BaseDir(base).model_dir("interrupted") / "checkpoint-latent.pt", process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: SIGINT received") and "--resume" in lines[0]
    assert not (BaseDir(base).model_dir("interrupted") / "latent.pt").exists()
    assert not lock_path(BaseDir(base).model_dir("interrupted")).exists()
    run(base, "train", "interrupted", "--resume")
    assert_same_weights(base, "interrupted", "train")


def test_float32_run_resumes_exactly_too(base):
    overrides = set_args("train.n_epochs=3", "train.batch_size=32", "runtime.mixed_precision=false")
    run(base, "train", "reference-float32", *overrides)
    process = start(base, "train", "killed-float32", *overrides)
    wait_for(BaseDir(base).model_dir("killed-float32") / "checkpoint-latent.pt", process)
    time.sleep(1.3)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    run(base, "train", "killed-float32", "--resume")
    assert_same_weights(base, "killed-float32", "train", reference="reference-float32")
    records = (BaseDir(base).model_dir("killed-float32") / "metrics.jsonl").read_text().splitlines()
    assert {json.loads(line)["precision"] for line in records} == {"float32"}
