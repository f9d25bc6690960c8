"""Data-parallel training on CPU with gloo and two processes equals a single-process run."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import config
from conftest import REPO, TINY_SETS, set_args
from lord.assets import BaseDir, lock_path
from lord.configuration import apply_overrides
from lord.data import store
from lord.training import data_block
from lord.training.distributed import Distributed
from lord.training.latent import LatentStage
from lord.training.loop import Batch, epoch_order

BATCH = 16


def tiny_stage(data_path, distributed):
    torch.manual_seed(0)
    dataset = store.load(data_path)
    # The noise std the divergence bound below was calibrated with, whatever the preset's tuning; float32,
    # whose rounding the bounds below are about (bf16 autocast rounds each process's convolutions alike).
    cfg = apply_overrides(config.get_config("lord-tiny"), TINY_SETS + [f"train.batch_size={BATCH}", "content_std=1",
                                                                       "runtime.mixed_precision=false"])
    cfg["data"] = data_block("syn", dataset, cfg)
    return LatentStage(cfg, dataset, torch.device("cpu"), seed=0, distributed=distributed)


def one_step(stage, indices, distributed):
    if distributed.enabled:
        positions = torch.nonzero(indices % distributed.world_size == distributed.rank).flatten()
        local = indices[positions]
        batch = Batch(local, local // distributed.world_size, len(indices), positions)
    else:
        batch = Batch(indices, indices, len(indices))
    losses = stage.train_step(batch, 0, 100)
    grads = {name: p.grad.clone() for name, p in stage.model.named_parameters() if p.grad is not None}
    # Adam's first step leaves (1 - beta1) * gradient in the first moment: the content gradients.
    grads["content"] = stage.distributed.gather_rows(stage.content.adam.exp_avg / 0.5, stage.content.n_rows)
    return {key: value.detach() for key, value in losses.items()}, grads


def leave_without_teardown():
    """End a spawned worker once its results are written: under a loaded machine the interpreter's own
    teardown after a gloo group (C++ destructors of its threads) aborted once in a full run ("terminate called
    without an active exception"), which says nothing of what the test checks."""
    os._exit(0)


def worker(rank, data_path, store_path, result_path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=2)
    distributed = Distributed(rank, 2)
    losses, grads = one_step(tiny_stage(data_path, distributed), torch.arange(3, 3 + BATCH), distributed)
    losses = {key: distributed.all_reduce_sum(value.clone()) for key, value in losses.items()}
    if rank == 0:
        torch.save({"losses": losses, "grads": grads}, result_path)
    dist.barrier()  # neither process tears the group down while the other still uses it
    dist.destroy_process_group()
    leave_without_teardown()


def test_one_step_gives_the_single_process_gradients(synthetic_base, tmp_path):
    data_path = BaseDir(synthetic_base).data_path("syn")
    mp.spawn(worker, args=(str(data_path), str(tmp_path / "store"), str(tmp_path / "result.pt")), nprocs=2)
    distributed_result = torch.load(tmp_path / "result.pt", weights_only=True)
    losses, grads = one_step(tiny_stage(data_path, Distributed()), torch.arange(3, 3 + BATCH), Distributed())
    for key, value in losses.items():
        torch.testing.assert_close(distributed_result["losses"][key], value, rtol=1e-5, atol=1e-7)
    assert set(distributed_result["grads"]) == set(grads)
    for key, value in grads.items():
        torch.testing.assert_close(distributed_result["grads"][key], value, rtol=1e-4, atol=1e-7, msg=key)
    assert grads["content"][3:3 + BATCH].abs().sum() > 0 and grads["content"][:3].abs().sum() == 0


def train_steps(stage, distributed, n_steps):
    """`n_steps` of the epoch-0 order, as the loop feeds them; returns the shared and per-image weights."""
    order = epoch_order(0, 0, stage.n_images)
    for step in range(n_steps):
        one_step_batch = order[step * BATCH : (step + 1) * BATCH]
        if distributed.enabled:
            positions = torch.nonzero(one_step_batch % 2 == distributed.rank).flatten()
            local = one_step_batch[positions]
            stage.train_step(Batch(local, local // 2, BATCH, positions), step, n_steps)
        else:
            stage.train_step(Batch(one_step_batch, one_step_batch, BATCH), step, n_steps)
    return {"generator": torch.cat([p.detach().flatten() for p in stage.model.generator.parameters()]),
            "content": stage.content.full_table().clone()}


N_STEPS = 60


def steps_worker(rank, data_path, store_path, result_path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=2)
    distributed = Distributed(rank, 2)
    result = train_steps(tiny_stage(data_path, distributed), distributed, N_STEPS)
    if rank == 0:
        torch.save(result, result_path)
    dist.barrier()  # neither process tears the group down while the other still uses it
    dist.destroy_process_group()
    leave_without_teardown()


def test_training_stays_within_the_rounding_divergence_of_one_process(synthetic_base, tmp_path):
    """Training is chaotic: rounding-sized changes of the weights grow, through Adam, to differences of the
    learning rate's order. Two processes sum in another order than one, so they must stay as close to the
    single-process run as a single-process run whose weights were perturbed at float32 rounding level
    does (within a factor of 3); no closer is possible."""
    data_path = BaseDir(synthetic_base).data_path("syn")
    mp.spawn(steps_worker, args=(str(data_path), str(tmp_path / "store"), str(tmp_path / "two.pt")), nprocs=2)
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    one = train_steps(tiny_stage(data_path, Distributed()), Distributed(), N_STEPS)
    perturbed_stage = tiny_stage(data_path, Distributed())
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in perturbed_stage.model.generator.parameters():
            parameter.mul_(1 + 2.0**-23 * torch.randn(parameter.shape, generator=generator))
    perturbed = train_steps(perturbed_stage, Distributed(), N_STEPS)
    for key in ("generator", "content"):
        floor = (perturbed[key] - one[key]).abs().mean()
        assert (two[key] - one[key]).abs().mean() <= 3 * floor + 1e-7, key


def torchrun(base, *args, processes=2):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               str(REPO / "lord.py"), "-q", "-bd", str(base), *args]
    if processes == 1:
        command = [sys.executable, str(REPO / "lord.py"), "-q", "-bd", str(base), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process):
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return out


TRAIN = ["train", "-dn", "syn", "-cf", "lord-tiny",
         *set_args("train.n_epochs=3", f"train.batch_size={BATCH}", "train.learning_rate.latent=0.01",
                   "train.learning_rate.generator=0.001", "runtime.mixed_precision=false")]


def losses_of(model_dir):
    return [json.loads(line)["loss"] for line in (model_dir / "metrics.jsonl").read_text().splitlines()]


def weights(model_dir):
    return torch.load(model_dir / "latent.pt", weights_only=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synthetic_base):
    import shutil

    base = tmp_path_factory.mktemp("distributed")
    shutil.copytree(synthetic_base, base, dirs_exist_ok=True)
    finished(torchrun(base, *TRAIN, "-mn", "single", processes=1))
    finished(torchrun(base, *TRAIN, "-mn", "two", processes=2))
    return base


def test_two_processes_match_one_process(runs):
    """Through torchrun: the same per-epoch losses as one process (to 1e-2, relative; see above for why
    the weights themselves are compared against the rounding divergence), the same files, one writer."""
    single, two = BaseDir(runs).model_dir("single"), BaseDir(runs).model_dir("two")
    np.testing.assert_allclose(losses_of(two), losses_of(single), rtol=1e-2)
    assert set(weights(two)) == set(weights(single))
    assert sorted(p.name for p in (two / "samples").iterdir()) == sorted(p.name for p in (single / "samples").iterdir())
    assert not lock_path(two).exists()


def interrupted_run(base, name, processes):
    """Start a run, stop it with SIGTERM once its first epoch is logged, and return after its checkpoint."""
    process = torchrun(base, *TRAIN, "-mn", name, processes=processes)
    metrics = BaseDir(base).model_dir(name) / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.exists() and metrics.read_text().strip()) and time.monotonic() < deadline:
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    return process.returncode, err


@pytest.mark.parametrize("first, then", [(2, 1), (1, 2)])
def test_resume_with_another_number_of_processes(runs, first, then):
    name = f"resume-{first}-{then}"
    code, err = interrupted_run(runs, name, first)
    model_dir = BaseDir(runs).model_dir(name)
    assert (model_dir / "checkpoint-latent.pt").exists()
    if code == 0:
        pytest.skip("the run finished before the signal arrived")
    assert "--resume" in err
    finished(torchrun(runs, "train", "-dn", "syn", "-mn", name, "--resume", processes=then))
    np.testing.assert_allclose(losses_of(model_dir), losses_of(BaseDir(runs).model_dir("single")), rtol=1e-2)
    assert set(weights(model_dir)) == set(weights(BaseDir(runs).model_dir("single")))


# Runs lord.py as a torchrun worker; in the job's first attempt rank 0 stalls at its STALL_AT-th checkpoint
# write, inside it (written, not yet renamed into place) or right after it, and writes its pid to
# STALL_FLAG, so that the test can kill it exactly there. Read by this test only.
STALLING_WORKER = """
import os, runpy, sys, time
if os.environ["TORCHELASTIC_RESTART_COUNT"] == "0" and os.environ["RANK"] == "0":
    import lord.assets
    real_atomic_write = lord.assets.atomic_write
    checkpoints = []

    def stall():
        with open(os.environ["STALL_FLAG"] + ".tmp", "w") as flag:
            flag.write(str(os.getpid()))
        os.replace(os.environ["STALL_FLAG"] + ".tmp", os.environ["STALL_FLAG"])
        time.sleep(600)

    def atomic_write(path, write):
        if not os.path.basename(str(path)).startswith("checkpoint-"):
            return real_atomic_write(path, write)
        checkpoints.append(path)
        here = len(checkpoints) == int(os.environ["STALL_AT"])
        if here and os.environ["STALL_WHERE"] == "inside":
            def write_then_stall(file):
                write(file)
                file.flush()
                stall()
            return real_atomic_write(path, write_then_stall)
        real_atomic_write(path, write)
        if here:
            stall()

    lord.assets.atomic_write = atomic_write
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def killed_and_restarted(base, tmp_path, name, where, nth, args=TRAIN, checkpoint_steps=50):
    """A two-process run of `args` under `torchrun --max-restarts 1` whose rank 0 is killed with SIGKILL at
    its nth checkpoint write; returns (exit code, stdout, stderr) of the whole job."""
    worker = tmp_path / "stalling_worker.py"
    worker.write_text(STALLING_WORKER)
    flag = tmp_path / f"{name}.pid"
    env = dict(os.environ, OMP_NUM_THREADS="1", TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1", PYTHONPATH=str(REPO),
               STALL_AT=str(nth), STALL_WHERE=where, STALL_FLAG=str(flag))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--max-restarts", "1", str(worker), str(REPO / "lord.py"), "-bd", str(base), *args, "-mn", name,
               "--checkpoint-steps", str(checkpoint_steps)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not flag.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flag.exists(), "rank 0 never reached the checkpoint write"
    os.kill(int(flag.read_text()), signal.SIGKILL)
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def assert_same_weights(model_dir, reference_dir):
    restarted, reference = weights(model_dir), weights(reference_dir)
    assert set(restarted) == set(reference)
    for key, value in reference.items():
        assert torch.equal(restarted[key], value), key


@pytest.mark.parametrize("where, nth, resumed_at", [
    ("after", 1, "resuming latent at epoch 1, step 50 of 81"),
    ("inside", 3, "resuming latent at epoch 2, step 0 of 81"),
])
def test_a_killed_worker_is_restarted_by_torchrun_and_the_run_ends_as_if_uninterrupted(runs, tmp_path, where, nth,
                                                                                          resumed_at):
    """Checkpoints at steps 50, 81 (epoch end), 100...: killed right after the first, the run continues from
    step 50; killed inside the third (step 100), whose file is never renamed into place, from the epoch end.
    No --resume is typed; the weights equal the uninterrupted two-process run's bit for bit."""
    name = f"elastic-{where}"
    code, out, err = killed_and_restarted(runs, tmp_path, name, where, nth)
    assert code == 0, err[-3000:]
    assert "distributed: world size 2, backend gloo, 1296 images" in out
    assert "rank 1: 648 images, memory" in out and "proportional" in out
    assert "restart 1 of torchrun run" in out and resumed_at in out
    assert "taking over the lock" in err
    model_dir = BaseDir(runs).model_dir(name)
    assert_same_weights(model_dir, BaseDir(runs).model_dir("two"))
    # The loss sums resume as the all-reduced total on rank 0: summed in another order, equal to rounding.
    np.testing.assert_allclose(losses_of(model_dir), losses_of(BaseDir(runs).model_dir("two")), rtol=1e-6)
    assert not list(model_dir.glob(".*.tmp-*")) and not list(model_dir.parent.glob(".*.tmp-*"))
    assert not lock_path(model_dir).exists()


ENCODERS = ["train-encoders", "-dn", "syn", "--set", "train_encoders.n_epochs=2"]


def test_a_killed_train_encoders_worker_is_restarted_too(runs, tmp_path):
    """Stage 2 under torchrun: killed after its first checkpoint (step 25 of 40), restarted, continued,
    and ending with the uninterrupted two-process stage's weights."""
    import shutil

    models = BaseDir(runs)
    for name in ("encoders-reference", "encoders-elastic"):
        shutil.copytree(models.model_dir("two"), models.model_dir(name))
    finished(torchrun(runs, *ENCODERS, "-mn", "encoders-reference"))
    code, out, err = killed_and_restarted(runs, tmp_path, "encoders-elastic", "after", 1, ENCODERS, 25)
    assert code == 0, err[-3000:]
    assert "resuming amortized at epoch 1, step 25 of 40" in out
    reference = torch.load(models.model_dir("encoders-reference") / "amortized.pt", weights_only=True)
    restarted = torch.load(models.model_dir("encoders-elastic") / "amortized.pt", weights_only=True)
    assert set(restarted) == set(reference)
    for key, value in reference.items():
        assert torch.equal(restarted[key], value), key


def documented_two_node_commands():
    """The command lines of docs/distributed.md's two-node section."""
    text = (REPO / "docs" / "distributed.md").read_text()
    section = text.split("\n## Two nodes\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def start_documented(line, base, port):
    """A documented command line, run in `base` with only the host, port and paths put in."""
    import shlex

    words = shlex.split(line.replace("NODE0:29400", f"127.0.0.1:{port}"))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    while "=" in words[0]:
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    launcher = {"torchrun": [sys.executable, "-m", "torch.distributed.run"], "python": [sys.executable]}
    words = launcher[words[0]] + [str(REPO / "lord.py") if word == "lord.py" else word for word in words[1:]]
    return subprocess.Popen(words, cwd=base, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_agents_as_two_nodes_train_the_weights_of_one_agent(tmp_path):
    """docs/distributed.md's two-node commands, two torchrun agents on this machine with a c10d rendezvous:
    the same weights, bit for bit, as one agent running the same two processes."""
    import socket

    preprocess, two_nodes, one_node = documented_two_node_commands()
    assert "--nnodes 2" in two_nodes and "--standalone" in one_node
    finished(start_documented(preprocess, tmp_path, None))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    agents = [start_documented(two_nodes, tmp_path, port) for _ in range(2)]
    for agent in agents:
        finished(agent)
    finished(start_documented(one_node, tmp_path, None))
    models = BaseDir(tmp_path)
    assert_same_weights(models.model_dir("two-node-check"), models.model_dir("one-node-check"))


def test_only_a_restart_of_the_same_job_and_stage_continues(tmp_path, monkeypatch):
    """The marker decides: the job's own id and stage continue (resuming when there is a checkpoint, else
    starting the stage again without the existing-model refusal); another job, another stage, torchrun's
    shared default id and a run outside torchrun keep the command's own flags."""
    from lord.training import elastic_continuation
    from lord.training.distributed import ELASTIC_MARKER

    (tmp_path / ELASTIC_MARKER).write_text("job-1 latent\n")
    flags = (False, False, ["train.n_epochs=2"])
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    assert elastic_continuation(tmp_path, "latent", *flags) == flags
    for run_id, stage in (("job-2", "latent"), ("job-1", "amortized"), ("none", "latent")):
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", run_id)
        assert elastic_continuation(tmp_path, stage, *flags) == flags
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-1")
    assert elastic_continuation(tmp_path, "latent", *flags) == (False, True, ["train.n_epochs=2"])
    (tmp_path / "checkpoint-latent.pt").write_bytes(b"")
    assert elastic_continuation(tmp_path, "latent", *flags) == (True, True, ())
