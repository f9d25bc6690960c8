"""Per-image codes (LORD's content, OverLORD's uncorrelated code): the table and its optimizer.

The table lives outside torch's optimizers so that it can be sharded across processes (each holds the
rows of its own images) and updated where it lies, and so that checkpoints hold it whole.
"""

import math

import torch


class EmbeddingAdam:
    """Adam for a table whose gradient is non-zero on the rows of the batch only.

    mode "dense": every row steps every step, exactly as torch.optim.Adam on the whole table (a row out
    of the batch sees a zero gradient and keeps moving on its momentum). This is the published method;
    its cost grows with the table.
    mode "rows": only the batch's rows step, each with its own step count for the bias correction
    ("lazy" Adam); a step costs the same whatever the number of images. A row out of the batch does not
    move on its momentum, which with beta1 = 0.5 amounts to a smaller effective step per visit.
    Rows in one call must be distinct.
    """

    def __init__(self, table, mode="dense", betas=(0.5, 0.999), eps=1e-8):
        if mode not in ("dense", "rows"):
            raise ValueError(f"unknown embedding update {mode!r}")
        self.table = table
        self.mode = mode
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.exp_avg = torch.zeros_like(table)
        self.exp_avg_sq = torch.zeros_like(table)
        self.row_steps = torch.zeros(table.shape[0], dtype=torch.float32, device=table.device)
        self.steps = 0

    @torch.no_grad()
    def step(self, rows, grad, lr):
        grad = grad.to(self.table.dtype)
        if self.mode == "dense":
            self._dense_step(rows, grad, lr)
        else:
            self._rows_step(rows, grad, lr)

    def _dense_step(self, rows, grad, lr):
        self.steps += 1
        full_grad = torch.zeros_like(self.table).index_copy_(0, rows, grad)
        self.exp_avg.lerp_(full_grad, 1 - self.beta1)
        self.exp_avg_sq.mul_(self.beta2).addcmul_(full_grad, full_grad, value=1 - self.beta2)
        bias1 = 1 - self.beta1**self.steps
        bias2 = 1 - self.beta2**self.steps
        denominator = (self.exp_avg_sq.sqrt() / math.sqrt(bias2)).add_(self.eps)
        self.table.addcdiv_(self.exp_avg, denominator, value=-lr / bias1)

    def _rows_step(self, rows, grad, lr):
        self.steps += 1
        exp_avg = self.exp_avg[rows].mul_(self.beta1).add_(grad, alpha=1 - self.beta1)
        exp_avg_sq = self.exp_avg_sq[rows].mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        row_steps = self.row_steps[rows] + 1
        bias1 = 1 - self.beta1**row_steps
        bias2 = 1 - self.beta2**row_steps
        denominator = (exp_avg_sq.sqrt() / bias2.sqrt()[:, None]).add_(self.eps)
        self.table.index_add_(0, rows, exp_avg / denominator * (-lr / bias1)[:, None])
        self.exp_avg.index_copy_(0, rows, exp_avg)
        self.exp_avg_sq.index_copy_(0, rows, exp_avg_sq)
        self.row_steps.index_copy_(0, rows, row_steps)


class ImageCodes:
    """The per-image codes this process trains: its shard of the table and the table's Adam state.

    `lookup(rows)` gives the batch's codes as a leaf tensor; after backward, `step(rows, codes, lr)`
    applies the update to the shard. `state_dict` gathers the full tables (a collective).
    """

    def __init__(self, table, mode, distributed, device, betas=(0.5, 0.999)):
        self.n_rows = len(table)
        self.distributed = distributed
        self.table = distributed.shard(table.detach()).to(device, copy=True).contiguous()
        self.adam = EmbeddingAdam(self.table, mode, betas=betas)

    def lookup(self, rows):
        return self.table[rows].detach().requires_grad_()

    def step(self, rows, codes, lr):
        grad = codes.grad if codes.grad is not None else torch.zeros_like(codes)
        self.adam.step(rows, grad, lr)

    def codes_of(self, indices):
        """Codes of any images by global id (a collective when distributed)."""
        return self.distributed.rows_of(self.table, indices)

    def full_table(self):
        return self.distributed.gather_rows(self.table, self.n_rows)

    def state_dict(self):
        gather = self.distributed.gather_rows
        return {
            "table": gather(self.table, self.n_rows).cpu(),
            "exp_avg": gather(self.adam.exp_avg, self.n_rows).cpu(),
            "exp_avg_sq": gather(self.adam.exp_avg_sq, self.n_rows).cpu(),
            "row_steps": gather(self.adam.row_steps, self.n_rows).cpu(),
            "steps": self.adam.steps,
        }

    def load_state_dict(self, state):
        shard = self.distributed.shard
        self.table.copy_(shard(state["table"]))
        self.adam.exp_avg.copy_(shard(state["exp_avg"]))
        self.adam.exp_avg_sq.copy_(shard(state["exp_avg_sq"]))
        self.adam.row_steps.copy_(shard(state["row_steps"]))
        self.adam.steps = int(state["steps"])
