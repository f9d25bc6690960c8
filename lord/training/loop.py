"""The one training loop every stage shares: epochs, data order, logging, checkpoints and resume.

A stage (see `Stage`) knows its networks and its loss; this loop knows time. It draws each epoch's
order from (seed, epoch), so the position in the data order is just a step count; it keeps the loss
sums on the device and synchronises with the host only every `log_every` steps; it writes a checkpoint
at every epoch end, every `checkpoint_minutes` (looked at on logging steps) and every `checkpoint_steps`
steps, one metrics line per epoch, and a translation grid per epoch. A checkpoint holds everything a
resumed run needs to end with the same weights as an uninterrupted one: the stage state (networks,
optimizers, EMA), epoch and position, loss sums, and the RNG states.
"""

import json
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lord.assets import atomic_write_bytes, remove_stale_temporaries, save_torch
from lord.errors import Interrupted, UserError
from lord.model import checkpoint_path, load_tensors, weights_path
from lord.tensorboard import EventWriter
from lord.training.common import keep_freed_host_memory, precision_name, use_bf16
from lord.training.distributed import Distributed
from lord.visualize import save_png

CHECKPOINT_VERSION = 1


@dataclass
class Batch:
    """The images of one global batch that this process trains on.

    `indices` are their ids in the data set, `rows` their rows in this process's shard of per-image
    arrays (the same as `indices` on a single process), `size` the global batch size and `positions`
    their places in the global batch (None: all of it). Losses are sums over this process's images
    divided by `size`; random draws are made for the whole global batch and cut to `positions`, so a
    distributed step equals a single-process one.
    """

    indices: torch.Tensor
    rows: torch.Tensor
    size: int
    positions: torch.Tensor = None

    def __len__(self):
        return len(self.indices)

    def mean(self, per_image):
        """The batch mean of a per-image quantity: this process's share of it."""
        return per_image.sum() / self.size

    def draw(self, values):
        """This process's rows of a draw made for the whole global batch."""
        return values if self.positions is None else values[self.positions]

    def randn(self, shape, generator, device):
        return self.draw(torch.randn((self.size, *shape), generator=generator, device=device))


class Stage:
    """What a training stage gives the loop. Subclasses fill in the methods."""

    name = "stage"
    n_images = 0
    batch_size = 1
    n_epochs = 1
    optimizer = None  # one optimizer with named param groups: its learning rates are logged
    drop_last = True  # whether an epoch skips its last, incomplete batch (else it is one more, smaller step)
    rng = None  # a torch.Generator for the stage's own noise: checkpointed with the stage
    amp = False  # bf16 autocast (runtime.mixed_precision resolved for the device)

    def configure(self, block, config, dataset, device, distributed):
        """The settings every stage takes from its config block (`batch_size`, `n_epochs`) and from
        `runtime`; returns the process group (a single process when `distributed` is None)."""
        self.distributed = distributed or Distributed()
        self.device = device
        self.batch_size = block["batch_size"]
        self.n_epochs = block["n_epochs"]
        self.n_images = len(dataset)
        self.amp = use_bf16(config["runtime"]["mixed_precision"], device)
        if device.type == "cpu":
            keep_freed_host_memory()
        return self.distributed

    def train_step(self, batch, step, total_steps):
        """One optimisation step on a `Batch`; returns detached scalar loss tensors (this process's
        share), one of them named "loss"."""
        raise NotImplementedError

    def learning_rates(self):
        if self.optimizer is None:
            return {}
        return {group["name"]: group["lr"] for group in self.optimizer.param_groups}

    def state_dict(self):
        """What a checkpoint holds of the stage (by default its `model` and `optimizer`)."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def final_state_dict(self):
        """The weights written as `<stage>.pt` when the stage completes (by default the model's)."""
        return {key: value.detach().cpu() for key, value in self.model.state_dict().items()}

    def sample_grid(self):
        """A uint8 (H, W, C) translation grid, or None."""
        return None

    def rng_state(self):
        return {} if self.rng is None else {"noise": self.rng.get_state()}

    def set_rng_state(self, state):
        if self.rng is not None:
            self.rng.set_state(state["noise"])


def epoch_order(seed, epoch, count):
    """The permutation of the training images for one epoch, a pure function of (seed, epoch)."""
    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(count, generator=generator)


def capture_rng_state():
    """Python, NumPy, torch and CUDA RNG states as tensors and plain values (no pickle needed)."""
    _, python_state, python_gauss = random.getstate()
    _, numpy_keys, numpy_pos, numpy_has_gauss, numpy_gauss = np.random.get_state()
    state = {
        "python": list(python_state),
        "python_gauss": python_gauss,
        "numpy": torch.from_numpy(numpy_keys.astype(np.int64)),
        "numpy_pos": int(numpy_pos),
        "numpy_has_gauss": int(numpy_has_gauss),
        "numpy_gauss": float(numpy_gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state):
    random.setstate((3, tuple(int(x) for x in state["python"]), state["python_gauss"]))
    np.random.set_state((
        "MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"],
        state["numpy_has_gauss"], state["numpy_gauss"],
    ))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class SignalFlag:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint at the next step and stops."""

    def __init__(self):
        self.received = None
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def read_metrics(path):
    """The complete lines of metrics.jsonl (a torn last line is dropped)."""
    if not path.is_file():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def write_metrics(path, records):
    atomic_write_bytes(path, "".join(json.dumps(record) + "\n" for record in records).encode())


class Run:
    """One stage's run in a model directory, on one process or on each process of a torchrun group."""

    def __init__(self, stage, model_dir, tensorboard_dir, seed=0, quiet=False, checkpoint_minutes=10.0,
                 log_every=50, distributed=None, checkpoint_steps=None):
        self.stage = stage
        self.model_dir = Path(model_dir)
        self.tensorboard_dir = Path(tensorboard_dir)
        self.seed = seed
        self.distributed = distributed or Distributed()
        self.is_main = self.distributed.is_main
        self.quiet = quiet or not self.is_main
        self.checkpoint_seconds = max(0.0, float(checkpoint_minutes)) * 60.0
        self.checkpoint_steps = int(checkpoint_steps or 0)
        self.log_every = max(1, int(log_every))
        self.metrics_path = self.model_dir / "metrics.jsonl"
        self.checkpoint_path = checkpoint_path(self.model_dir, stage.name)
        self.steps_per_epoch = stage.n_images // stage.batch_size
        if not stage.drop_last:
            self.steps_per_epoch = -(-stage.n_images // stage.batch_size)
        if self.steps_per_epoch < 1:
            raise UserError(
                f"{stage.name}: the batch size {stage.batch_size} is larger than the {stage.n_images} "
                "training images; lower it with --set"
            )
        self.total_steps = self.steps_per_epoch * stage.n_epochs

    # -- checkpoints -------------------------------------------------------------------------------

    def save_checkpoint(self, epoch, position, sums):
        """Every process takes part (the stage gathers its sharded tables); rank 0 writes."""
        state = {
            "version": CHECKPOINT_VERSION,
            "stage": self.stage.name,
            "epoch": epoch,
            "position": position,
            "global_step": epoch * self.steps_per_epoch + position,
            "steps_per_epoch": self.steps_per_epoch,
            "loss_sums": {key: self.distributed.all_reduce_sum(value.detach().clone()).cpu()
                          for key, value in sums.items()},
            "stage_state": self.stage.state_dict(),
            "stage_rng": self.stage.rng_state(),
            "rng": capture_rng_state(),
        }
        if self.is_main:
            save_torch(self.checkpoint_path, state)
        self.distributed.barrier()

    def load_checkpoint(self):
        if not self.checkpoint_path.is_file():
            raise UserError(f"nothing to resume: no checkpoint {self.checkpoint_path}")
        state = load_tensors(self.checkpoint_path, "checkpoint")
        if not isinstance(state, dict) or state.get("stage") != self.stage.name:
            raise UserError(f"{self.checkpoint_path} is not a {self.stage.name} checkpoint")
        if state.get("steps_per_epoch") != self.steps_per_epoch:
            raise UserError(
                f"{self.checkpoint_path} was written with {state.get('steps_per_epoch')} steps per epoch, "
                f"this run has {self.steps_per_epoch}: the data or batch size changed"
            )
        try:  # a checkpoint of an earlier version carries no checksum: damage shows here at the latest
            self.stage.load_state_dict(state["stage_state"])
            self.stage.set_rng_state(state["stage_rng"])
            restore_rng_state(state["rng"])
        except (KeyError, TypeError, ValueError, OverflowError, RuntimeError, IndexError, AttributeError) as error:
            raise UserError(f"damaged: checkpoint file {self.checkpoint_path} cannot be restored "
                            f"({type(error).__name__}); use the previous checkpoint or --overwrite") from None
        sums = state["loss_sums"]
        if self.distributed.enabled and not self.is_main:
            sums = {key: torch.zeros_like(value) for key, value in sums.items()}
        return state["epoch"], state["position"], sums

    # -- the loop ----------------------------------------------------------------------------------

    def run(self, resume=False):
        stage = self.stage
        start_epoch, start_position, restored_sums = 0, 0, {}
        if resume:
            if self.is_main:
                remove_stale_temporaries(self.model_dir)
            start_epoch, start_position, restored_sums = self.load_checkpoint()
            if self.is_main:
                kept = [r for r in read_metrics(self.metrics_path)
                        if r.get("stage") != stage.name or r.get("epoch", 0) <= start_epoch]
                write_metrics(self.metrics_path, kept)
            if not self.quiet:
                print(f"resuming {stage.name} at epoch {start_epoch + 1}, step {start_position} of "
                      f"{self.steps_per_epoch}")
        elif self.is_main:
            write_metrics(self.metrics_path, [r for r in read_metrics(self.metrics_path) if r.get("stage") != stage.name])
        if not self.quiet:
            print(f"{stage.name}: {self.steps_per_epoch} steps per epoch, {stage.n_epochs} epochs, on "
                  f"{self._device()} in {precision_name(stage.amp, stage.device)}", flush=True)
        writer = EventWriter(self.tensorboard_dir) if self.is_main else None
        self.last_checkpoint = time.monotonic()
        try:
            with SignalFlag() as signals:
                for epoch in range(start_epoch, stage.n_epochs):
                    position = start_position if epoch == start_epoch else 0
                    sums = {k: v.to(self._device()) for k, v in restored_sums.items()} if epoch == start_epoch else {}
                    self._run_epoch(epoch, position, sums, signals, writer)
            final = stage.final_state_dict()
            if self.is_main:
                save_torch(weights_path(self.model_dir, stage.name), final)
            self.distributed.barrier()
        finally:
            if writer is not None:
                writer.close()

    def _device(self):
        return getattr(self.stage, "device", torch.device("cpu"))

    def _batches(self, epoch, position):
        """The epoch's batches from `position` on, as this process sees them."""
        stage, distributed, device = self.stage, self.distributed, self._device()
        size = stage.batch_size
        order = epoch_order(self.seed, epoch, stage.n_images)
        if not distributed.enabled:
            order = order.to(device)
            for step in range(position, self.steps_per_epoch):
                indices = order[step * size : (step + 1) * size]
                yield step, Batch(indices, indices, len(indices))
            return
        for step in range(position, self.steps_per_epoch):
            indices = order[step * size : (step + 1) * size]
            positions = torch.nonzero(indices % distributed.world_size == distributed.rank).flatten()
            local = indices[positions]
            yield step, Batch(local.to(device), (local // distributed.world_size).to(device), len(indices),
                              positions.to(device))

    def _run_epoch(self, epoch, position, sums, signals, writer):
        stage = self.stage
        device = self._device()
        first_bad_step = torch.full((), -1, dtype=torch.long, device=device)
        started = time.perf_counter()
        images_done = 0
        bar = tqdm(
            total=self.steps_per_epoch, initial=position, disable=self.quiet,
            desc=f"{stage.name} {epoch + 1}/{stage.n_epochs}", unit="step", dynamic_ncols=True, leave=False,
        )
        try:
            for step, batch in self._batches(epoch, position):
                global_step = epoch * self.steps_per_epoch + step
                losses = stage.train_step(batch, global_step, self.total_steps)
                first_bad_step = torch.where(
                    (~torch.isfinite(losses["loss"])) & (first_bad_step < 0),
                    torch.as_tensor(global_step, device=device), first_bad_step,
                )
                for key, value in losses.items():
                    sums[key] = sums[key] + value.detach() if key in sums else value.detach().clone()
                steps_done = step + 1
                images_done += batch.size
                bar.update(1)
                step_due = self.checkpoint_steps > 0 and (global_step + 1) % self.checkpoint_steps == 0
                if steps_done % self.log_every and steps_done != self.steps_per_epoch:
                    if step_due:
                        self._check_finite(first_bad_step)
                        self.save_checkpoint(epoch, steps_done, sums)
                        self.last_checkpoint = time.monotonic()
                    continue
                self._check_finite(first_bad_step)
                bar.set_postfix(loss=f"{self.distributed.all_reduce_sum(losses['loss'].detach().clone()).item():.4f}")
                if self.distributed.any_flag(signals.received is not None, device):
                    self.save_checkpoint(epoch, steps_done, sums)
                    raise Interrupted(
                        f"{signals.received or 'a signal'} received: checkpoint saved at epoch {epoch + 1}, "
                        f"step {steps_done} of {stage.name}; run the same command with --resume to continue"
                    )
                due = self.checkpoint_seconds and time.monotonic() - self.last_checkpoint >= self.checkpoint_seconds
                if (self.distributed.broadcast_flag(due, device) or step_due) and steps_done < self.steps_per_epoch:
                    self.save_checkpoint(epoch, steps_done, sums)
                    self.last_checkpoint = time.monotonic()
        finally:
            bar.close()
        seconds = time.perf_counter() - started
        self._end_epoch(epoch, sums, seconds, images_done, writer)
        self.save_checkpoint(epoch + 1, 0, {})
        self.last_checkpoint = time.monotonic()

    def _check_finite(self, first_bad_step):
        bad = int(self.distributed.all_reduce_max(first_bad_step.clone()).item())
        if bad >= 0:
            raise UserError(
                f"{self.stage.name}: non-finite loss at step {bad} (epoch {bad // self.steps_per_epoch + 1}); "
                f"stopped, the last good checkpoint {self.checkpoint_path} is kept"
            )

    def _end_epoch(self, epoch, sums, seconds, images_done, writer):
        stage = self.stage
        global_step = (epoch + 1) * self.steps_per_epoch
        totals = {key: self.distributed.all_reduce_sum(value.detach().clone()) for key, value in sums.items()}
        record = {"stage": stage.name, "epoch": epoch + 1, "step": global_step}
        record.update({key: float(value.item()) / self.steps_per_epoch for key, value in totals.items()})
        record["lr"] = stage.learning_rates()
        record["seconds"] = round(seconds, 3)
        record["images_per_second"] = round(images_done / max(seconds, 1e-9), 1)
        record["precision"] = "bf16" if stage.amp else "float32"
        grid = stage.sample_grid()
        if not self.is_main:
            return
        write_metrics(self.metrics_path, read_metrics(self.metrics_path) + [record])
        for key, value in record.items():
            if isinstance(value, float) and key != "seconds":
                writer.add_scalar(f"{stage.name}/{key}", value, global_step)
        for key, value in record["lr"].items():
            writer.add_scalar(f"{stage.name}/lr_{key}", value, global_step)
        if grid is not None:
            save_png(self.model_dir / "samples" / f"{stage.name}-epoch-{epoch + 1:04d}.png", grid)
            writer.add_image(f"{stage.name}/translation", grid, global_step)
        writer.flush()
        if not self.quiet:
            losses = ", ".join(f"{key} {record[key]:.4f}" for key in totals)
            print(f"{stage.name} epoch {epoch + 1}/{stage.n_epochs}: {losses} "
                  f"({record['images_per_second']:.0f} img/s)")
