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
"""

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from lord.errors import UserError


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
