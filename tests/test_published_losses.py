"""The paper presets' stage-1 regularisers are the published formulas, computed here independently
from a known code table: lord-pytorch penalises the noisy content code (`train_latent`: the sum over
dimensions of (c + noise)^2, averaged over the batch); OverLORD the uncorrelated code before its noise
(`__iterate_latent_model`: the mean over dimensions of u^2, averaged over the batch)."""

import numpy as np
import pytest
import torch

import config
from conftest import tiny_config
from lord.assets import BaseDir
from lord.configuration import apply_overrides
from lord.data import store
from lord.training import data_block
from lord.training.loop import Batch


def known_codes(stage, table):
    stage_table = stage.content if hasattr(stage, "content") else stage.uncorrelated
    stage_table.table.copy_(table)
    return stage_table


def test_lord_decay_penalises_the_noisy_content_code(synthetic_base):
    from lord.training.latent import LatentStage

    dataset = store.load(BaseDir(synthetic_base).data_path("syn"))
    cfg = tiny_config({"content_std": 0.5, "train.batch_size": 8})
    cfg["data"] = data_block("syn", dataset, cfg)
    stage = LatentStage(cfg, dataset, torch.device("cpu"), seed=3)
    table = torch.randn(len(dataset), cfg["content_dim"], generator=torch.Generator().manual_seed(1))
    known_codes(stage, table)
    rows = torch.arange(8, 16)
    noise_source = torch.Generator().set_state(stage.rng.get_state())
    noise = torch.randn(8, cfg["content_dim"], generator=noise_source) * 0.5
    losses = stage.train_step(Batch(rows, rows, 8), 0, 10)
    expected = (table[rows] + noise).pow(2).sum(dim=1).mean()
    assert float(losses["content_decay"]) == pytest.approx(float(expected), rel=1e-5)
    without_noise = table[rows].pow(2).sum(dim=1).mean()
    assert abs(float(losses["content_decay"]) - float(without_noise)) > 0.5


def test_overlord_decay_is_the_mean_square_of_the_code_before_noise(synthetic32_base):
    from conftest import OVERLORD_TINY_SETS
    from lord.training.overlord_latent import OverlordLatentStage

    dataset = store.load(BaseDir(synthetic32_base).data_path("syn32"))
    cfg = apply_overrides(config.get_config("overlord-tiny"), OVERLORD_TINY_SETS + ["uncorrelated_std=1.0"])
    cfg["data"] = data_block("syn32", dataset, cfg)
    stage = OverlordLatentStage(cfg, dataset, torch.device("cpu"), seed=0)
    table = torch.randn(len(dataset), cfg["uncorrelated_dim"], generator=torch.Generator().manual_seed(2)) * 3
    known_codes(stage, table)
    rows = torch.arange(0, 16)
    losses = stage.train_step(Batch(rows, rows, 16), 0, 10)
    expected = table[rows].pow(2).mean(dim=1).mean()
    assert float(losses["uncorrelated_decay"]) == pytest.approx(float(expected), rel=1e-6)
    weights = cfg["disentanglement"]["loss_weights"]
    total = weights["reconstruction"] * float(losses["reconstruction"]) + weights["uncorrelated_decay"] * float(expected)
    assert float(losses["loss"]) == pytest.approx(total, rel=1e-5)


def test_label_codes_start_uniform_in_a_small_range():
    from lord.model import OverlordLatentModel

    cfg = config.get_config("overlord-tiny")
    cfg["data"] = {"img_shape": [32, 32, 3], "n_labels": 50, "n_images": 200}
    torch.manual_seed(0)
    model = OverlordLatentModel(cfg)
    for table in (model.label_embedding.weight, model.uncorrelated_embedding.weight):
        values = table.detach().numpy()
        assert values.min() >= -0.05 and values.max() <= 0.05 and np.std(values) > 0.025
