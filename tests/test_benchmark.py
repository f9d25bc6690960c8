"""The training benchmark runs both paths of every stage and reports the JSON fields the README names
(tiny sizes: this checks that it works, not how fast anything is)."""

import argparse
import importlib.util

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_train", REPO / "benchmarks" / "bench_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def options(**changes):
    values = dict(device="cpu", warmup=1, steps=1, threads=1, compile=False, repeats=1)
    values.update(changes)
    return argparse.Namespace(**values)


@pytest.mark.parametrize("stage, config", [
    ("lord-latent", "lord-tiny"), ("lord-encoders", "lord-tiny"),
    ("overlord-latent", "overlord-tiny"), ("overlord-synthesis", "overlord-tiny"),
])
def test_every_stage_is_measured_on_both_paths(bench, stage, config):
    size = 16 if config == "lord-tiny" else 32
    row = bench.compare((stage, config, size, 8, 64), options())
    for key in ("stage", "config", "ours_img_s", "reference_img_s", "speed_ratio", "ours_peak_rss_mb",
                "reference_peak_rss_mb", "memory_ratio"):
        assert key in row
    assert row["ours_img_s"] > 0 and row["reference_img_s"] > 0 and row["batch_size"] == 8
    assert row["speed_ratio"] == pytest.approx(row["ours_img_s"] / row["reference_img_s"], rel=1e-2)
    assert 0 < row["memory_ratio"] < 10


def test_scaling_uses_tables_of_the_requested_size(bench):
    case = ("lord-latent", "lord-tiny", 16, 8, 64)
    for rows, update in ((True, "rows"), (False, "dense")):
        config = bench.case_config(case, bench.make_dataset(500, 16), rows_update=rows)
        assert config["train"]["embedding_update"] == update and config["data"]["n_images"] == 500
        assert bench.measure(case, "ours", options(), n_images=500, rows_update=rows)["step_ms"] > 0
