"""runtime.mixed_precision: bf16 autocast on CPUs that have native bf16, and what it must not change."""

import json

import pytest
import torch

from conftest import CLI, overlord_set_args, set_args
from lord.assets import BaseDir
from lord.training import common
from lord.training.common import autocast, channels_last_for, use_bf16

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("native", [True, False])
def test_auto_follows_the_cpu_and_true_false_force_it(monkeypatch, native):
    monkeypatch.setattr(common, "cpu_has_native_bf16", lambda: native)
    assert use_bf16("auto", CPU) is native
    assert use_bf16("auto", CUDA) is True
    for forced in ("true", True):
        assert use_bf16(forced, CPU) is True
    for off in ("false", False):
        assert use_bf16(off, CPU) is False and use_bf16(off, CUDA) is False


def test_native_bf16_is_asked_of_torch():
    expected = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert common.cpu_has_native_bf16() is expected


def test_autocast_runs_convolutions_in_bf16_on_cpu_and_nothing_when_off():
    x, weight = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    with autocast(CPU, True):
        assert torch.nn.functional.conv2d(x, weight).dtype == torch.bfloat16
    with autocast(CPU, False):
        assert torch.nn.functional.conv2d(x, weight).dtype == torch.float32


def test_channels_last_on_cpu_for_overlord_only():
    lord = {"arch": "lord", "runtime": {"channels_last": True}}
    overlord = {"arch": "overlord", "runtime": {"channels_last": True}}
    assert not channels_last_for(lord, CPU) and channels_last_for(overlord, CPU)
    assert channels_last_for(lord, CUDA)
    overlord["runtime"]["channels_last"] = False
    assert not channels_last_for(overlord, CUDA) and not channels_last_for(overlord, CPU)


def test_a_bad_setting_is_a_user_error(base_with_data, run_cli):
    result = run_cli("-bd", str(base_with_data), "train", "-dn", "syn", "-mn", "m", "-cf", "lord-tiny",
                     *set_args("runtime.mixed_precision=maybe"))
    assert result.code != 0
    assert result.err_lines == ["error: config runtime.mixed_precision must be one of auto, true, false, got 'maybe'"]


def records(base, model):
    path = BaseDir(base).model_dir(model) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def final_losses(base, model):
    last = {}
    for record in records(base, model):
        last[record["stage"]] = record
    return last


def test_lord_stages_end_alike_in_both_precisions_and_say_which(base_with_data, capsys):
    for precision in ("false", "true"):
        assert CLI.main(["-bd", str(base_with_data), "train", "-dn", "syn", "-mn", precision, "-cf", "lord-tiny",
                         *set_args("train.n_epochs=3", f"runtime.mixed_precision={precision}")]) == 0
        out = capsys.readouterr().out
        assert ("in bf16 autocast" if precision == "true" else "in float32") in out.splitlines()[0]
        assert CLI.main(["-bd", str(base_with_data), "-q", "train-encoders", "-dn", "syn", "-mn", precision,
                         "--set", "train_encoders.n_epochs=3"]) == 0
    full, half = final_losses(base_with_data, "false"), final_losses(base_with_data, "true")
    for stage in ("latent", "amortized"):
        assert full[stage]["precision"] == "float32" and half[stage]["precision"] == "bf16"
        assert half[stage]["loss"] == pytest.approx(full[stage]["loss"], rel=0.03)
    # the embedding tables stay float32 under autocast
    latent = torch.load(BaseDir(base_with_data).model_dir("true") / "latent.pt", weights_only=True)
    assert latent["content_embedding.weight"].dtype == torch.float32


def test_overlord_stages_end_alike_in_both_precisions(synthetic32_base, tmp_path):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(synthetic32_base, base)
    for precision in ("false", "true"):
        common_args = ["-bd", str(base), "-q", "--device", "cpu"]
        assert CLI.main([*common_args, "train", "-dn", "syn32", "-mn", precision, "-cf", "overlord-tiny",
                         *overlord_set_args("none", "disentanglement.n_epochs=3",
                                            f"runtime.mixed_precision={precision}")]) == 0
        assert CLI.main([*common_args, "train-encoders", "-dn", "syn32", "-mn", precision]) == 0
        assert CLI.main([*common_args, "train-synthesis", "-dn", "syn32", "-mn", precision]) == 0
    full, half = final_losses(base, "false"), final_losses(base, "true")
    for stage in ("latent", "amortized", "synthesis"):
        assert full[stage]["precision"] == "float32" and half[stage]["precision"] == "bf16"
    for stage in ("latent", "amortized"):
        assert half[stage]["loss"] == pytest.approx(full[stage]["loss"], rel=0.03)
    # the adversarial stage's loss moves with the discriminator; its reconstruction term must agree
    assert half["synthesis"]["reconstruction"] == pytest.approx(full["synthesis"]["reconstruction"], rel=0.03)


def test_lords_generator_outputs_a_float32_image_under_autocast():
    from lord.networks.lord import Generator

    torch.manual_seed(0)
    generator = Generator(8, 16, (32, 32, 3), n_adain_layers=3, adain_dim=16, final_conv_dim=8)
    content, classes = torch.randn(4, 8), torch.randn(4, 16)
    with autocast(CPU, True):
        image = generator(content, classes)
    assert image.dtype == torch.float32
    # float32 throughout is the published Sequential, unchanged
    with torch.no_grad():
        x = generator.fc_layers(content).view(-1, *generator.initial_shape)
        params = generator.modulation(classes)
        for layer, conv in enumerate(generator.upsample_convs):
            x = generator.activation(conv(torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")))
            x = generator.adain(x, scale=params[:, layer, :, 1], bias=params[:, layer, :, 0])
        assert torch.equal(generator(content, classes), generator.last_convs(x))


def test_paper_presets_train_in_float32_and_the_cpu_presets_follow_the_device():
    import config

    for name in config.names():
        expected = "auto" if "tiny" in name else "false"
        assert config.get_config(name)["runtime"]["mixed_precision"] == expected, name


def test_a_float32_run_on_a_bf16_device_says_how_to_ask_for_bf16(base_with_data, capsys, monkeypatch):
    monkeypatch.setattr(common, "cpu_has_native_bf16", lambda: True)
    assert CLI.main(["-bd", str(base_with_data), "train", "-dn", "syn", "-mn", "f32", "-cf", "lord-tiny",
                     *set_args("train.n_epochs=1", "runtime.mixed_precision=false")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "in float32 (bf16 autocast is supported here: --set runtime.mixed_precision=true)" in first
    monkeypatch.setattr(common, "cpu_has_native_bf16", lambda: False)
    assert common.precision_name(False, CPU) == "float32"
    assert common.precision_name(True, CPU) == "bf16 autocast"
