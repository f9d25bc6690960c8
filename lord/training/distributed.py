"""Data-parallel training across processes (torchrun): NCCL on GPUs, gloo on CPU.

The scheme keeps a distributed run equal to a single-process run with the same global batch:

- every process draws the same global batch from (seed, epoch) and trains on the images of it that it
  owns: image i belongs to rank i % world_size, which also holds its per-image code (row i // world_size
  of its shard), so per-image codes are never all-reduced;
- each process's loss is the sum over its images divided by the GLOBAL batch size, and the shared
  weights' gradients are summed across processes (a DDP communication hook), which gives exactly the
  gradient of the global batch;
- random draws (noise, augmentations) are made for the whole global batch with the same generator on
  every process, and each process keeps its images' rows.

Checkpoints and final weights hold the full tables (gathered to rank 0), so a run can resume with
any number of processes, a single one included.

Elastic restarts are torchrun's (`--max-restarts N`): when a worker dies, or a node drops, torchrun
stops the others and starts the whole group again. Every attempt leaves the job's run id
(TORCHELASTIC_RUN_ID: a fresh uuid with --standalone, else --rdzv-id) in the model directory
(`ELASTIC_MARKER`); a worker that finds its own job's id there is a restart of that job and continues
from the stage's last checkpoint by itself. (TORCHELASTIC_RESTART_COUNT is not used for that: it is
counted per node, and the workers of a node that did not fail start again with 0.)
"""

import datetime
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from lord.errors import UserError

ELASTIC_MARKER = "elastic-run"


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self):
        return self.world_size > 1

    @property
    def is_main(self):
        return self.rank == 0

    def shard(self, array):
        """The rows of a per-image array this process owns (every row when alone)."""
        return array[self.rank :: self.world_size] if self.enabled else array

    def barrier(self):
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, tensor):
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_reduce_max(self, tensor):
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor

    def broadcast_flag(self, value, device):
        """rank 0's boolean, on every process."""
        if not self.enabled:
            return bool(value)
        flag = torch.tensor([1 if value else 0], device=device)
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    def any_flag(self, value, device):
        """True on every process when it is true on any."""
        if not self.enabled:
            return bool(value)
        flag = torch.tensor([1 if value else 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def sum_gradients(self, parameters):
        """Sum the gradients of `parameters` across processes, in one flattened all-reduce.

        For steps DDP's hooks do not fit, such as the R1 penalty's double backward.
        """
        if not self.enabled:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch._utils._flatten_dense_tensors(grads)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        for grad, summed in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
            grad.copy_(summed)

    def gather_rows(self, shard, n_rows):
        """The full (n_rows, ...) table from every process's interleaved shard (a collective)."""
        if not self.enabled:
            return shard
        per_rank = -(-n_rows // self.world_size)
        padded = shard.new_zeros((per_rank,) + tuple(shard.shape[1:]))
        padded[: len(shard)] = shard
        pieces = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(pieces, padded)
        full = shard.new_empty((n_rows,) + tuple(shard.shape[1:]))
        for rank, piece in enumerate(pieces):
            count = len(range(rank, n_rows, self.world_size))
            full[rank :: self.world_size] = piece[:count]
        return full

    def rows_of(self, shard, indices):
        """The rows of arbitrary images (global ids), wherever they are held (a collective)."""
        if not self.enabled:
            return shard[indices]
        owned = indices % self.world_size == self.rank
        out = shard.new_zeros((len(indices),) + tuple(shard.shape[1:]))
        out[owned] = shard[indices[owned] // self.world_size]
        return self.all_reduce_sum(out)


@dataclass(frozen=True)
class ElasticAttempt:
    """What torchrun tells its workers about the job: its run id (None outside torchrun, and for
    torchrun's default id "none", which every job without --rdzv-id shares) and how many times this
    node's agent has restarted its workers."""

    run_id: str = None
    restart: int = 0

    @classmethod
    def from_environment(cls):
        run_id = os.environ.get("TORCHELASTIC_RUN_ID") or None
        try:
            restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
        except ValueError:
            restart = 0
        return cls(None if run_id == "none" else run_id, max(0, restart))

    def continues(self, model_dir, stage_name=None):
        """Whether this job was already training `model_dir` (that stage of it, if given): then this is a
        restart of it. Every worker decides before the process group forms, and rank 0 writes the marker
        only after, so on a job's first attempt no worker finds its id."""
        if self.run_id is None:
            return False
        try:
            fields = (model_dir / ELASTIC_MARKER).read_text().split()
        except (OSError, UnicodeDecodeError):
            return False
        return fields[:1] == [self.run_id] and (stage_name is None or fields[1:2] == [stage_name])

    def marker(self, stage_name):
        """What the model directory holds while this job trains `stage_name`."""
        return f"{self.run_id} {stage_name}\n".encode()


def process_memory(pid="self"):
    """A process's resident, proportional (shared pages divided among their users), anonymous (its own:
    not file pages, which the page cache holds once per machine) and private memory in bytes, from
    /proc/<pid>/smaps_rollup; None where the system has no such file."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as file:
            text = file.read()
    except OSError:
        return None
    fields = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return {"rss": fields.get("Rss", 0), "pss": fields.get("Pss", 0), "anonymous": fields.get("Anonymous", 0),
            "private": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)}


def describe_processes(distributed, n_images, device, attempt=None):
    """The lines a distributed run logs at its start: world size, backend, restart, and each process's share
    of the images and memory (a collective; every process gets the lines, rank 0 prints them)."""
    if not distributed.enabled:
        return []
    memory = process_memory() or {"rss": -1, "pss": -1, "anonymous": -1}
    device_bytes = torch.cuda.memory_allocated(device) if device.type == "cuda" else -1
    mine = torch.tensor([len(range(distributed.rank, n_images, distributed.world_size)), memory["rss"],
                         memory["pss"], memory["anonymous"], device_bytes], dtype=torch.int64, device=device)
    everyone = [torch.empty_like(mine) for _ in range(distributed.world_size)]
    dist.all_gather(everyone, mine)
    restart = ""
    if attempt is not None and attempt.restart:
        restart = f", restart {attempt.restart} of torchrun run {attempt.run_id}"
    lines = [f"distributed: world size {distributed.world_size}, backend {dist.get_backend()}, "
             f"{n_images} images{restart}"]
    mib = 2.0**20
    for rank, values in enumerate(everyone):
        share, rss, pss, anonymous, on_device = (int(v) for v in values.tolist())
        line = f"  rank {rank}: {share} images"
        if rss >= 0:
            line += (f", memory {rss / mib:.0f} MiB resident, {pss / mib:.0f} MiB proportional, "
                     f"{anonymous / mib:.0f} MiB its own (anonymous)")
        if on_device >= 0:
            line += f", {on_device / mib:.0f} MiB on its GPU"
        lines.append(line)
    return lines


def from_environment(device_name):
    """The process group torchrun describes (WORLD_SIZE > 1), or a single process; and the device."""
    from lord.training.data import resolve_device

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed(), resolve_device(device_name)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        if torch.cuda.device_count() <= local_rank:
            raise UserError(f"rank {rank} needs cuda:{local_rank} but this node has {torch.cuda.device_count()} GPU(s)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if rank == 0 and int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0) > 0:
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            print("warning: torchrun shares its rendezvous store with the workers, where a restarted group can "
                  "read the addresses of the one it replaces (pytorch/pytorch#135712); start torchrun with "
                  "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 for restarts that connect", file=sys.stderr)
        if os.environ.get("TORCHELASTIC_RUN_ID") == "none":
            print("warning: torchrun was given no --rdzv-id, so a restarted worker group cannot tell that it "
                  "continues this run and will be refused; give a --rdzv-id unique to the job", file=sys.stderr)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(minutes=30))
    return Distributed(rank=dist.get_rank(), world_size=dist.get_world_size()), device


def sum_gradients_hook(state, bucket):
    """DDP communication hook: sum the gradients across processes (DDP's default averages them)."""
    return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(lambda future: future.value()[0])


def data_parallel(module, distributed, device):
    """`module` whose gradients are summed across processes; the module itself when alone."""
    if not distributed.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    wrapped = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    wrapped.register_comm_hook(None, sum_gradients_hook)
    return wrapped
