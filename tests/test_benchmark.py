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
    values = dict(device="cpu", warmup=1, steps=1, threads=1, compile=False, repeats=1, precision="auto",
                  peak_size=256)
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
    assert row["cpu_time_ratio"] == pytest.approx(row["reference_cpu_ms"] / row["ours_cpu_ms"], rel=1e-2)
    assert 0 < row["memory_ratio"] < 10
    # how much of the machine the step uses: FLOPs counted (the synthesis stage's R1 double backward
    # included) over the step time, against matrix products timed in the same process
    assert row["gflop_per_step"] > 0 and row["gflop_s"] > 0
    assert row["attainable_bf16_gflop_s"] > 0 and row["attainable_float32_gflop_s"] > 0
    attainable = row["attainable_bf16_gflop_s"] if row["ours_precision"] == "bf16" else row["attainable_float32_gflop_s"]
    assert row["share"] == pytest.approx(row["gflop_s"] / attainable, rel=2e-2)
    assert 0 < row["share"] < 1.5 and 0 < row["share_bf16"] < 1.5
    assert row["gflop_s"] == pytest.approx(row["gflop_per_step"] * row["ours_img_s"] / 8, rel=2e-2)
    assert len(row["load_averages"]) == 2


@pytest.mark.parametrize("precision, expected", [("float32", "float32"), ("bf16", "bf16")])
def test_our_path_runs_in_the_precision_asked_for(bench, precision, expected):
    result = bench.measure(("lord-latent", "lord-tiny", 16, 8, 64), "ours", options(precision=precision))
    assert result["precision"] == expected


def test_step_flops_count_what_the_flop_counter_counts_and_the_r1_double_backward(bench):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    layer = torch.nn.Conv2d(3, 4, 3, bias=False)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    forward = 2 * 2 * 4 * 3 * 9 * 6 * 6  # multiply-adds of every output, twice
    reference = FlopCounterMode(display=False)
    with reference:
        layer(x).sum().backward()
    with bench.StepFlops() as counted:
        layer(x).sum().backward()
    assert counted.total == reference.get_total_flops() == 3 * forward
    # an R1-style penalty: the gradient with respect to the input, differentiated again
    with bench.StepFlops() as counted:
        (grad,) = torch.autograd.grad(layer(x).square().sum(), x, create_graph=True)
        grad.square().sum().backward()
    assert counted.total > 3 * forward


def test_scaling_uses_tables_of_the_requested_size(bench):
    case = ("lord-latent", "lord-tiny", 16, 8, 64)
    for rows, update in ((True, "rows"), (False, "dense")):
        config = bench.case_config(case, bench.make_dataset(500, 16), rows_update=rows)
        assert config["train"]["embedding_update"] == update and config["data"]["n_images"] == 500
        assert bench.measure(case, "ours", options(), n_images=500, rows_update=rows)["step_ms"] > 0


def test_gpu_check_parses_and_its_python_parts_run_on_cpu(tmp_path):
    import json
    import subprocess
    import sys

    script = REPO / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    result = subprocess.run(["bash", str(script), "--device", "cpu", "--dry-run", "--steps", "1",
                             "--json", str(tmp_path / "bench.json")],
                            capture_output=True, text=True, env={**__import__("os").environ, "PYTHON": sys.executable},
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    table = [line for line in result.stdout.splitlines() if line.startswith(("| train ", "| benchmark "))]
    trained = [line for line in table if line.startswith("| train ")]
    # LORD's two stages, three for each OverLORD correlation mode, and LORD's again in bf16
    assert len(trained) == 2 + 3 * 3 + 2
    assert sum(line.startswith("| train ") and "`lord-tiny`" in line and " | bf16 |" in line for line in trained) == 2
    ratios = [line for line in result.stdout.splitlines() if line.endswith(("| latent |", "| amortized |"))]
    assert len(ratios) == 2 and all("`lord-tiny`" in line for line in ratios)
    benchmark = json.loads((tmp_path / "bench.json").read_text())
    assert [row["stage"] for row in benchmark["stages"]] == ["lord-latent", "lord-encoders", "overlord-latent",
                                                            "overlord-synthesis"]
    assert len([line for line in table if line.startswith("| benchmark ")]) == 4
    # the compiled path beside the eager one (traced only in a dry run), each with its share
    compiled = benchmark["compile_against_eager"]
    assert [row["stage"] for row in compiled] == ["overlord-latent"] and benchmark["compile_backend"] == "eager"
    assert compiled[0]["compiled_img_s"] > 0 and 0 < compiled[0]["compiled_share"] < 1.5
    assert any(line.startswith("| compiled overlord-latent |") for line in result.stdout.splitlines())


def test_gpu_check_refuses_to_run_without_a_gpu_unless_dry(tmp_path):
    import subprocess
    import sys

    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == ["error: no CUDA device: run on a machine with a GPU, or with "
                                                  "--device cpu --dry-run"]


def test_our_path_computes_the_references_method(bench):
    """The toolkit's additions that a CPU preset switches on are off in the benchmark's path."""
    lord = bench.case_config(("lord-encoders", "lord-tiny", 16, 8, 64), bench.make_dataset(64, 16))
    overlord = bench.case_config(("overlord-synthesis", "overlord-tiny", 32, 8, 64), bench.make_dataset(64, 32))
    assert lord["train_encoders"]["translated_fraction"] == 0
    assert overlord["synthesis"]["ema"]["enabled"] is False


@pytest.fixture(scope="module")
def original_formulation():
    spec = importlib.util.spec_from_file_location("original_formulation",
                                                  REPO / "benchmarks" / "original_formulation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("device_type", ["cpu", "cuda"])
def test_the_references_stylegan_layers_compute_what_the_toolkits_compute(original_formulation, device_type):
    import copy

    import torch

    from lord.networks.stylegan import Discriminator, Generator, ModulatedConv2d

    torch.manual_seed(0)
    generator = Generator(16, 32, 3, channel_base=256, channel_max=16)
    discriminator = Discriminator(32, 3, channel_base=256, channel_max=16, mbstd_group_size=4)
    for parameter in [*generator.parameters(), *discriminator.parameters()]:
        parameter.data.add_(torch.randn_like(parameter) * 0.1)  # away from the initial biases of 0 and 1
    code, images = torch.randn(6, 16), torch.rand(6, 3, 32, 32)
    for network, batch in ((generator, code), (discriminator, images)):
        reference = original_formulation.use_original_formulation(copy.deepcopy(network), device_type)
        replaced = [type(layer) for layer in reference.modules() if "forward" in vars(layer)]
        if network is generator:
            assert ModulatedConv2d in replaced
        if device_type == "cpu":
            assert len(replaced) == len([layer for layer in reference.modules()
                                         if type(layer) in original_formulation.CPU_FORWARDS])
        with torch.no_grad():
            ours, theirs = network(batch), reference(batch)
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max().item() <= 1e-5 * max(1.0, ours.abs().max().item())


def test_upfirdn2d_upsamples_by_zero_insertion_and_filters_each_plane(original_formulation):
    import torch

    x = torch.zeros(1, 2, 3, 3)
    x[0, 1, 1, 1] = 1.0
    kernel = torch.arange(1.0, 5.0).outer(torch.ones(4))  # not symmetric: the filter is flipped
    out = original_formulation.upfirdn2d(x, kernel, up=2, pad=(2, 1))
    assert out.shape == (1, 2, 6, 6)
    assert out[0, 0].abs().sum() == 0  # planes stay apart
    # The impulse lands at (2, 2) of the zero-inserted plane, at (4, 4) after padding by 2; filtering
    # (a convolution: the kernel flipped) then puts kernel[i, j] at (1 + i, 1 + j).
    expected = torch.zeros(6, 6)
    expected[1:5, 1:5] = kernel
    assert torch.equal(out[0, 1], expected)
