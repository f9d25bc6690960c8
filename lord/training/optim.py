"""Learning-rate schedules and the row-wise (lazy) Adam for per-image embeddings."""

import math

import torch


def cosine(step, total_steps, max_lr, min_lr):
    """Cosine annealing from max_lr at step 0 to min_lr at total_steps, evaluated per step."""
    progress = min(step, total_steps) / max(total_steps, 1)
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def adam(param_groups, betas=(0.5, 0.999), device=None):
    """Adam with the fastest exact implementation for the device (fused on CUDA, foreach elsewhere)."""
    fused = device is not None and device.type == "cuda"
    return torch.optim.Adam(param_groups, betas=betas, fused=fused or None, foreach=None if fused else True)


def set_cosine_learning_rates(optimizer, step, total_steps):
    """Each param group carries its own `max_lr` and `min_lr`."""
    for group in optimizer.param_groups:
        group["lr"] = cosine(step, total_steps, group["max_lr"], group["min_lr"])


class RowAdam:
    """Adam on the rows of a table that a batch touches; the other rows and their state stay as they are.

    Dense Adam keeps moving a row on steps where its gradient is zero (its momentum decays); this
    "lazy" variant does not, which makes a step's cost independent of the table's size. Each row keeps
    its own step count for bias correction. Rows in one call must be distinct.
    """

    def __init__(self, table, betas=(0.5, 0.999), eps=1e-8):
        self.table = table
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.exp_avg = torch.zeros_like(table)
        self.exp_avg_sq = torch.zeros_like(table)
        self.steps = torch.zeros(table.shape[0], dtype=torch.float32, device=table.device)

    @torch.no_grad()
    def step(self, rows, grad, lr):
        grad = grad.to(self.table.dtype)
        exp_avg = self.exp_avg[rows].mul_(self.beta1).add_(grad, alpha=1 - self.beta1)
        exp_avg_sq = self.exp_avg_sq[rows].mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        steps = self.steps[rows] + 1
        bias1 = 1 - self.beta1**steps
        bias2 = 1 - self.beta2**steps
        update = (exp_avg / bias1[:, None]) / ((exp_avg_sq / bias2[:, None]).sqrt_().add_(self.eps))
        self.table.index_add_(0, rows, update, alpha=-lr)
        self.exp_avg.index_copy_(0, rows, exp_avg)
        self.exp_avg_sq.index_copy_(0, rows, exp_avg_sq)
        self.steps.index_copy_(0, rows, steps)

    def state_dict(self):
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "steps": self.steps}

    def load_state_dict(self, state):
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.steps.copy_(state["steps"])
