"""Leakage probes: how well one factor can be read back from the codes of the other.

A disentangled model leaves no class information in its content codes, so a classifier trained to
predict the class from them should do no better than chance (lower is better; report `chance_level`
beside it). Two probes of different strength, both trained on a seeded 80% of the codes and scored
on the other 20%:

- "logistic": multinomial logistic regression on codes standardised with the training statistics,
  a small L2 penalty, fitted full-batch with L-BFGS from zero weights (a convex fit: deterministic).
- "mlp": two hidden layers of 256 ReLU units, Adam on minibatches, early stopping on the validation
  accuracy of a slice of the training part; the weights at the best epoch are scored.

The split is a seeded random permutation, not stratified: with hundreds of labels of a few codes
each, stratification is ill-defined, and a random split keeps the chance level honest because
`chance_level` is computed on the very same split.
"""

import numpy as np
import torch
import torch.nn.functional as F

from lord.errors import UserError

KINDS = ("logistic", "mlp")
LOGISTIC_L2 = 1e-4
LOGISTIC_MAX_ITERATIONS = 50
MLP_HIDDEN = 256
MLP_BATCH_SIZE = 256
MLP_LEARNING_RATE = 1e-3
MLP_MAX_EPOCHS = 30
MLP_PATIENCE = 4
MLP_VALIDATION_FRACTION = 0.1
LOGITS_PER_CHUNK = 2**24


def split_indices(n, seed=0, train_fraction=0.8):
    """Training and test indices of a seeded random permutation of range(n)."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must lie strictly between 0 and 1, got {train_fraction}")
    n_train = round(n * train_fraction)
    if n_train < 1 or n_train >= n:
        raise UserError(f"too few codes to probe: {n} cannot be split into training and test parts")
    order = np.random.default_rng(seed).permutation(n)
    return order[:n_train], order[n_train:]


def _to_numpy(values):
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _label_ids(labels):
    labels = _to_numpy(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    _, ids = np.unique(labels, return_inverse=True)
    return ids.reshape(-1)


def chance_level(labels, seed=0, train_fraction=0.8):
    """The accuracy of always predicting the most frequent label of the training part, measured on
    the test part of the same split that `probe_accuracy` uses with this seed and fraction.

    A probe that learned nothing from the codes scores about this; ties between equally frequent
    labels go to the smallest label.
    """
    ids = _label_ids(labels)
    train, test = split_indices(len(ids), seed, train_fraction)
    majority = np.bincount(ids[train]).argmax()
    return float(np.mean(ids[test] == majority))


def probe_accuracy(codes, labels, kind="logistic", seed=0, train_fraction=0.8, device=None):
    """Test accuracy of a `kind` probe predicting `labels` (N,) from `codes` (N, D).

    Deterministic for a seed on a given device; `device=None` runs on the CPU.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown probe kind {kind!r}; expected one of {', '.join(KINDS)}")
    codes = torch.as_tensor(_to_numpy(codes), dtype=torch.float32)
    codes = codes.reshape(len(codes), -1)
    ids = _label_ids(labels)
    if len(ids) != len(codes):
        raise ValueError(f"{len(codes)} codes but {len(ids)} labels")
    if not torch.isfinite(codes).all():
        raise UserError("the codes to probe contain NaN or infinite values")
    train, test = split_indices(len(ids), seed, train_fraction)
    n_labels = int(ids.max()) + 1
    if n_labels == 1:
        return 1.0
    device = torch.device(device or "cpu")
    targets = torch.as_tensor(ids, dtype=torch.int64)
    train_codes, test_codes = codes[train], codes[test]
    mean, std = train_codes.mean(dim=0), train_codes.std(dim=0, unbiased=False).clamp_min(1e-6)
    train_codes, test_codes = ((train_codes - mean) / std).to(device), ((test_codes - mean) / std).to(device)
    train_targets, test_targets = targets[train].to(device), targets[test].to(device)
    if kind == "logistic":
        predict = _fit_logistic(train_codes, train_targets, n_labels)
    else:
        predict = _fit_mlp(train_codes, train_targets, n_labels, seed)
    return _accuracy(predict, test_codes, test_targets, n_labels)


def _chunks(n_rows, n_labels):
    """Row slices that keep a chunk's logits near LOGITS_PER_CHUNK values, so memory stays bounded
    even for thousands of labels."""
    step = max(1, LOGITS_PER_CHUNK // n_labels)
    return [slice(start, start + step) for start in range(0, n_rows, step)]


def _accuracy(predict, codes, targets, n_labels):
    with torch.no_grad():
        correct = sum(
            int((predict(codes[rows]).argmax(dim=1) == targets[rows]).sum())
            for rows in _chunks(len(codes), n_labels)
        )
    return correct / len(codes)


def _fit_logistic(codes, targets, n_labels):
    weight = torch.zeros(codes.shape[1], n_labels, device=codes.device, requires_grad=True)
    bias = torch.zeros(n_labels, device=codes.device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=LOGISTIC_MAX_ITERATIONS, history_size=20,
        tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe",
    )
    chunks = _chunks(len(codes), n_labels)

    def closure():
        optimizer.zero_grad()
        total = 0.5 * LOGISTIC_L2 * weight.square().sum()
        total.backward()
        total = total.detach()
        for rows in chunks:
            loss = F.cross_entropy(codes[rows] @ weight + bias, targets[rows], reduction="sum") / len(codes)
            loss.backward()
            total = total + loss.detach()
        return total

    optimizer.step(closure)
    weight, bias = weight.detach(), bias.detach()
    return lambda x: x @ weight + bias


def _uniform(shape, bound, generator):
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


def _mlp_parameters(n_inputs, n_labels, generator, device):
    """PyTorch's default Linear initialisation, drawn from a private generator."""
    parameters = []
    for fan_in, fan_out in ((n_inputs, MLP_HIDDEN), (MLP_HIDDEN, MLP_HIDDEN), (MLP_HIDDEN, n_labels)):
        bound = fan_in ** -0.5
        parameters += [_uniform((fan_in, fan_out), bound, generator), _uniform((fan_out,), bound, generator)]
    return [parameter.to(device).requires_grad_() for parameter in parameters]


def _mlp_forward(parameters, x):
    w1, b1, w2, b2, w3, b3 = parameters
    x = torch.relu(x @ w1 + b1)
    x = torch.relu(x @ w2 + b2)
    return x @ w3 + b3


def _fit_mlp(codes, targets, n_labels, seed):
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(codes), generator=generator).to(codes.device)
    n_validation = max(1, round(len(codes) * MLP_VALIDATION_FRACTION))
    validation, fitting = order[:n_validation], order[n_validation:]
    if len(fitting) == 0:
        fitting = validation
    parameters = _mlp_parameters(codes.shape[1], n_labels, generator, codes.device)
    optimizer = torch.optim.Adam(parameters, lr=MLP_LEARNING_RATE)
    best_accuracy, best_parameters, epochs_without_gain = -1.0, None, 0
    for _ in range(MLP_MAX_EPOCHS):
        shuffled = fitting[torch.randperm(len(fitting), generator=generator).to(codes.device)]
        for batch in shuffled.split(MLP_BATCH_SIZE):
            loss = F.cross_entropy(_mlp_forward(parameters, codes[batch]), targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        accuracy = _accuracy(
            lambda x: _mlp_forward(parameters, x), codes[validation], targets[validation], n_labels
        )
        if accuracy > best_accuracy:
            best_accuracy, epochs_without_gain = accuracy, 0
            best_parameters = [parameter.detach().clone() for parameter in parameters]
        else:
            epochs_without_gain += 1
            if epochs_without_gain >= MLP_PATIENCE:
                break
    return lambda x: _mlp_forward(best_parameters, x)
