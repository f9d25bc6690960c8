"""OverLORD: presets, the correlated view, the three stages through the CLI, EMA, resume."""

import json
import math
import os
import shutil
import signal

import pytest
import torch

import config
from conftest import OVERLORD_PRESETS, overlord_set_args
from lord.assets import BaseDir
from lord.configuration import apply_overrides
from lord.data import store
from lord.errors import Interrupted, UserError
from lord.inference import OverlordModel, load_model
from lord.model import (
    OverlordAmortizedModel, OverlordLatentModel, OverlordSynthesisModel, load_tensors, read_config, weights_path,
)
from lord.training import seed_everything
from lord.training.correlation import random_pose
from lord.training.loop import Batch
from lord.training.loop import Run

# preset: attribute, correlation, (label, correlated, uncorrelated) dims, std, decay, then (batch size,
# epochs) of disentanglement, amortization and synthesis, as published.
PAPER_TABLE = {
    "overlord-ffhq": ("age", None, (256, None, 256), 0.01, 1e-4, ((32, 100), (64, 50), (16, 100))),
    "overlord-celeba": ("identity", None, (512, None, 64), 0.1, 1e-4, ((32, 50), (64, 50), (16, 50))),
    "overlord-afhq": ("domain", "pose-invariant", (512, 64, 64), 0.1, 0.1, ((8, 200), (64, 100), (16, 100))),
    "overlord-celebahq": ("gender", None, (256, None, 256), 0.1, 1e-5, ((32, 100), (64, 100), (16, 100))),
    "overlord-celebahq-hair": ("gender", "localized", (256, 64, 256), 0.1, 0.1, ((16, 100), (64, 100), (16, 100))),
}
STAGES = ("disentanglement", "amortization", "synthesis")


@pytest.mark.parametrize("name", sorted(PAPER_TABLE))
def test_paper_presets_match_the_published_table(name):
    attribute, correlation, dims, std, decay, schedule = PAPER_TABLE[name]
    preset = config.get_config(name)
    assert preset["arch"] == "overlord"
    assert (preset["labeled_attribute"], preset["correlation"]) == (attribute, correlation)
    assert (preset["label_dim"], preset["correlated_dim"], preset["uncorrelated_dim"]) == dims
    assert preset["uncorrelated_std"] == std
    assert preset["disentanglement"]["loss_weights"]["uncorrelated_decay"] == decay
    assert tuple((preset[stage]["batch_size"], preset[stage]["n_epochs"]) for stage in STAGES) == schedule
    rates = {"latent": 0.01, "generator": 1e-3, "encoder": 1e-4, "min": 1e-5}
    assert preset["disentanglement"]["learning_rate"] == rates
    assert preset["amortization"]["learning_rate"] == {"max": 1e-4, "min": 1e-5}
    assert preset["synthesis"]["learning_rate"] == {"generator": 1e-4, "discriminator": 1e-4}
    weights = preset["synthesis"]["loss_weights"]
    assert (weights["reconstruction"], weights["latent"], weights["adversarial"]) == (1.0, 10.0, 1.0)
    normalize = name != "overlord-afhq"
    assert preset["perceptual_loss"] == {"type": "vgg", "layers": [2, 7, 12, 21, 30], "normalize": normalize,
                                         "weights": None}
    assert preset["disentanglement"]["betas"] == [0.5, 0.999] and preset["synthesis"]["betas"] == [0.5, 0.999]
    assert preset["amortization"]["betas"] == [0.9, 0.999]
    assert weights["r1"] == 1.0 and preset["synthesis"]["ema"]["enabled"] is False
    assert preset["encoder"] == {"dim_in": 64, "max_conv_dim": 256}
    apply_overrides(preset, [])


def test_paper_augmentations():
    afhq, hair = config.get_config("overlord-afhq"), config.get_config("overlord-celebahq-hair")
    assert afhq["correlation_augmentation"] == {"scale": [0.6, 1.0], "flip": True, "rotation": 0.0}
    assert hair["correlation_augmentation"] == {"scale": [0.8, 1.0], "flip": True, "rotation": 0.0}


@pytest.mark.parametrize("correlation, name", sorted(OVERLORD_PRESETS.items()))
def test_cpu_presets_run_offline_on_the_synthetic_set(correlation, name):
    preset = config.get_config(name)
    assert preset["perceptual_loss"]["type"] == "l1" and preset["labeled_attribute"] == "classes"
    assert preset["correlation"] == (None if correlation == "none" else correlation)
    assert preset["generator"]["channel_base"] <= 1024
    apply_overrides(preset, [])


@pytest.mark.parametrize("override, message", [
    ("correlation=pose-invariant", "correlated_dim"),
    ("correlation=sideways", "one of null, pose-invariant, localized"),
    ("labeled_attribute=hair", "one of classes, age"),
    ("correlation_augmentation.scale=[0.9, 0.5]", "low <= high"),
    ("correlation_augmentation.rotation=200", "180"),
    ("synthesis.ema.half_life_images=0", "positive"),
    ("encoder.dim_in=0", "at least 1"),
    ("synthesis.betas=[0.5, 1.0]", "two numbers in"),
    ("arch=lord", "pick a preset"),
])
def test_bad_overlord_settings_are_user_errors(override, message):
    with pytest.raises(UserError, match=message):
        apply_overrides(config.get_config("overlord-tiny"), [override])


def test_correlation_can_be_switched_on_and_off_from_the_command_line():
    switched = apply_overrides(config.get_config("overlord-tiny"), ["correlation=localized", "correlated_dim=8"])
    assert switched["correlation"] == "localized" and switched["correlated_dim"] == 8
    assert apply_overrides(config.get_config("overlord-tiny-pose"), ["correlation=null"])["correlation"] is None


def test_random_pose_with_full_scale_is_the_image_or_its_mirror():
    images = torch.rand(16, 3, 8, 8)
    out = random_pose(images, torch.Generator().manual_seed(0), (1.0, 1.0), True, 0.0)
    same = (out - images).abs().flatten(1).amax(dim=1) < 1e-5
    mirrored = (out - images.flip(-1)).abs().flatten(1).amax(dim=1) < 1e-5
    assert (same | mirrored).all() and same.any() and mirrored.any()
    unflipped = random_pose(images, torch.Generator().manual_seed(0), (1.0, 1.0), False, 0.0)
    torch.testing.assert_close(unflipped, images, atol=1e-5, rtol=0)


def test_random_pose_crops_and_rotates_per_sample_from_the_generator():
    image = torch.zeros(1, 1, 32, 32)
    image[..., 8:24, 8:24] = 1.0
    images = image.expand(8, -1, -1, -1)
    out = random_pose(images, torch.Generator().manual_seed(1), (0.25, 0.5), False, 30.0)
    again = random_pose(images, torch.Generator().manual_seed(1), (0.25, 0.5), False, 30.0)
    torch.testing.assert_close(out, again)
    assert out.shape == images.shape
    assert not torch.allclose(out[0], out[1])
    # a crop of at most half the side magnifies the square: more of the output is inside it
    assert (out.mean(dim=(1, 2, 3)) > image.mean() + 0.05).all()


def metrics(model_dir):
    return [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("correlation", sorted(OVERLORD_PRESETS))
def test_each_correlation_mode_trains_three_stages_through_the_cli(overlord_models, correlation):
    model_dir = BaseDir(overlord_models).model_dir(correlation)
    model_config = read_config(model_dir)
    assert model_config["arch"] == "overlord" and model_config["data"]["n_labels"] == 2
    records = metrics(model_dir)
    assert [(r["stage"], r["epoch"]) for r in records] == [
        ("latent", 1), ("latent", 2), ("amortized", 1), ("amortized", 2), ("synthesis", 1)]
    for record in records:
        assert all(math.isfinite(v) for v in record.values() if isinstance(v, float))
    latent, amortized = records[0:2], records[2:4]
    assert latent[1]["reconstruction"] < latent[0]["reconstruction"]
    assert amortized[1]["label_regression"] < amortized[0]["label_regression"]
    assert {"reconstruction", "latent_regression", "adversarial", "discriminator_adversarial", "r1"} <= set(records[4])
    for stage, module in (("latent", OverlordLatentModel), ("amortized", OverlordAmortizedModel),
                          ("synthesis", OverlordSynthesisModel)):
        state = load_tensors(weights_path(model_dir, stage))
        assert set(state) == set(module(model_config).state_dict())
        assert any(key.startswith("correlated_encoder.") for key in state) == (correlation != "none")
    samples = sorted(path.name for path in (model_dir / "samples").iterdir())
    assert samples == ["amortized-epoch-0001.png", "amortized-epoch-0002.png", "latent-epoch-0001.png",
                       "latent-epoch-0002.png", "synthesis-epoch-0001.png"]
    assert list(BaseDir(overlord_models).tensorboard_dir(correlation).glob("events.out.tfevents.*"))


def test_stage2_keeps_stage1_generator_and_trains_a_new_correlated_encoder(overlord_models):
    model_dir = BaseDir(overlord_models).model_dir("pose-invariant")
    latent = load_tensors(weights_path(model_dir, "latent"))
    amortized = load_tensors(weights_path(model_dir, "amortized"))
    for key, value in latent.items():
        if key.startswith("generator."):
            torch.testing.assert_close(amortized[key], value, rtol=0, atol=0)
    correlated = [key for key in latent if key.startswith("correlated_encoder.")]
    assert correlated and any(not torch.equal(amortized[key], latent[key]) for key in correlated)
    records = [r for r in metrics(model_dir) if r["stage"] == "amortized"]
    assert records[1]["correlated_regression"] < records[0]["correlated_regression"]
    assert any(key.startswith("discriminator.") for key in amortized)


def test_synthesis_weights_hold_a_distinct_ema_generator_that_inference_uses(overlord_models):
    model_dir = BaseDir(overlord_models).model_dir("none")
    synthesis = load_tensors(weights_path(model_dir, "synthesis"))
    amortized = load_tensors(weights_path(model_dir, "amortized"))
    generator_keys = [key for key in synthesis if key.startswith("generator.")]
    differs = [not torch.equal(synthesis[key], synthesis[key.replace("generator.", "generator_ema.", 1)])
               for key in generator_keys]
    assert any(differs)
    tuned = [not torch.equal(synthesis[key], amortized[key]) for key in generator_keys]
    assert any(tuned)
    model = load_model(overlord_models, "none", device="cpu")
    assert isinstance(model, OverlordModel) and model.stage == "synthesis"
    for name, value in model.generator.state_dict().items():
        torch.testing.assert_close(value, synthesis["generator_ema." + name], rtol=0, atol=0)
    assert load_model(overlord_models, "none", stage="amortized", device="cpu").stage == "amortized"


def stage_inputs(base, model_name):
    model_dir = BaseDir(base).model_dir(model_name)
    model_config = read_config(model_dir)
    dataset = store.load(BaseDir(base).data_path(model_config["data"]["name"]))
    states = [load_tensors(weights_path(model_dir, stage)) for stage in ("latent", "amortized")]
    return model_config, dataset, states


def test_synthesis_steps_change_generator_and_discriminator(overlord_models):
    from lord.training.synthesis import SynthesisStage

    model_config, dataset, states = stage_inputs(overlord_models, "localized")
    seed_everything(0)
    stage = SynthesisStage(model_config, dataset, torch.device("cpu"), *states, seed=0)
    before = {key: value.clone() for key, value in stage.model.state_dict().items()}
    for step in range(3):
        indices = torch.arange(step * 8, step * 8 + 8)
        losses = stage.train_step(Batch(indices, indices, 8), step, 3)
        assert all(torch.isfinite(value) for value in losses.values())
    after = stage.model.state_dict()

    def changed(prefix):
        return any(not torch.equal(before[key], after[key]) for key in after if key.startswith(prefix))

    assert changed("generator.") and changed("discriminator.") and changed("generator_ema.")
    assert changed("label_encoder.") and changed("correlated_encoder.")
    assert 0 < float(losses["reconstruction"]) < 1 and float(losses["r1"]) >= 0


def interrupt_at(stage, step_to_interrupt):
    """Send this process SIGINT during one step: the loop saves a checkpoint after it and stops."""
    train_step = stage.train_step

    def step(batch, global_step, total_steps):
        if global_step == step_to_interrupt:
            os.kill(os.getpid(), signal.SIGINT)
        return train_step(batch, global_step, total_steps)

    stage.train_step = step


@pytest.mark.parametrize("model_name, stage_name", [("pose-invariant", "latent"), ("localized", "synthesis")])
def test_resume_ends_with_the_same_weights(overlord_models, tmp_path, model_name, stage_name):
    from lord.training.overlord_latent import OverlordLatentStage
    from lord.training.synthesis import SynthesisStage

    model_config, dataset, states = stage_inputs(overlord_models, model_name)
    if stage_name == "latent":  # 96 images: four batches of 20 and one of 16, interrupted in the smaller one
        model_config["disentanglement"]["batch_size"] = 20

    def build():
        seed_everything(0)
        if stage_name == "latent":
            return OverlordLatentStage(model_config, dataset, torch.device("cpu"), seed=0)
        return SynthesisStage(model_config, dataset, torch.device("cpu"), *states, seed=0)

    def run(stage, directory, resume=False):
        Run(stage, directory, tmp_path / "tensorboard", quiet=True, log_every=2).run(resume=resume)

    run(build(), tmp_path / "straight")
    interrupted = build()
    interrupt_at(interrupted, 4)
    with pytest.raises(Interrupted):
        run(interrupted, tmp_path / "resumed")
    assert not weights_path(tmp_path / "resumed", stage_name).exists()
    run(build(), tmp_path / "resumed", resume=True)
    straight = load_tensors(weights_path(tmp_path / "straight", stage_name))
    resumed = load_tensors(weights_path(tmp_path / "resumed", stage_name))
    assert set(straight) == set(resumed)
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0)


def test_localized_correlation_needs_masks(synthetic32_base, tmp_path, run_cli):
    base = tmp_path / "base"
    shutil.copytree(synthetic32_base, base)
    paths = BaseDir(base)
    dataset = store.load(paths.data_path("syn32"))
    dataset.extras.pop("masks")
    store.save(paths.data_path("nomasks"), dataset)
    result = run_cli("-bd", base, "train", "-dn", "nomasks", "-mn", "m", "-cf", "overlord-tiny-localized",
                     *overlord_set_args("localized"))
    assert result.code != 0 and len(result.err_lines) == 1 and "masks" in result.err
    assert not paths.model_dir("m").exists()


def test_images_below_32_pixels_are_refused(synthetic_base, run_cli):
    result = run_cli("-bd", synthetic_base, "train", "-dn", "syn", "-mn", "small", "-cf", "overlord-tiny")
    assert result.code != 0 and len(result.err_lines) == 1 and "32" in result.err
    assert not BaseDir(synthetic_base).model_dir("small").exists()


def test_missing_label_is_refused(synthetic32_base, run_cli):
    result = run_cli("-bd", synthetic32_base, "train", "-dn", "syn32", "-mn", "aged", "-cf", "overlord-tiny",
                     "--set", "labeled_attribute=age")
    assert result.code != 0 and len(result.err_lines) == 1 and "no label 'age'" in result.err
    assert not BaseDir(synthetic32_base).model_dir("aged").exists()


def test_stage_order_and_overwrite_are_enforced(synthetic32_base, tmp_path, run_cli):
    base = tmp_path / "base"
    shutil.copytree(synthetic32_base, base)
    common = ["-bd", base, "-q", "--device", "cpu"]
    assert run_cli(*common, "train", "-dn", "syn32", "-mn", "m", "-cf", "overlord-tiny",
                   *overlord_set_args("none", "disentanglement.n_epochs=1", "amortization.n_epochs=1")).code == 0
    result = run_cli(*common, "train-synthesis", "-dn", "syn32", "-mn", "m")
    assert result.code != 0 and "run train-encoders first" in result.err and len(result.err_lines) == 1
    assert run_cli(*common, "train-encoders", "-dn", "syn32", "-mn", "m").code == 0
    assert run_cli(*common, "train-synthesis", "-dn", "syn32", "-mn", "m", "--set", "synthesis.batch_size=16").code == 0
    done = weights_path(BaseDir(base).model_dir("m"), "synthesis")
    before = done.read_bytes()
    result = run_cli(*common, "train-synthesis", "-dn", "syn32", "-mn", "m")
    assert result.code != 0 and "--overwrite" in result.err and done.read_bytes() == before
    result = run_cli(*common, "train-synthesis", "-dn", "syn32", "-mn", "m", "--set", "label_dim=4")
    assert result.code != 0 and "only keys under synthesis, runtime" in result.err
    assert run_cli(*common, "train-synthesis", "-dn", "syn32", "-mn", "m", "--overwrite",
                   "--set", "synthesis.loss_weights.adversarial=0").code == 0
    assert done.read_bytes() != before
    assert read_config(BaseDir(base).model_dir("m"))["synthesis"]["loss_weights"]["adversarial"] == 0


def test_train_synthesis_is_for_overlord_models(base_with_data, run_cli):
    from conftest import set_args

    assert run_cli("-bd", base_with_data, "-q", "train", "-dn", "syn", "-mn", "lord", "-cf", "lord-tiny",
                   *set_args("train.n_epochs=1")).code == 0
    result = run_cli("-bd", base_with_data, "train-synthesis", "-dn", "syn", "-mn", "lord")
    assert result.code != 0 and len(result.err_lines) == 1 and "OverLORD" in result.err


def test_rows_embedding_update_trains(synthetic32_base, tmp_path, run_cli):
    base = tmp_path / "base"
    shutil.copytree(synthetic32_base, base)
    result = run_cli("-bd", base, "-q", "--device", "cpu", "train", "-dn", "syn32", "-mn", "rows", "-cf",
                     "overlord-tiny-pose",
                     *overlord_set_args("pose-invariant", "disentanglement.embedding_update=rows"))
    assert result.code == 0, result
    records = metrics(BaseDir(base).model_dir("rows"))
    assert records[1]["reconstruction"] < records[0]["reconstruction"]
    assert records[1]["lr"]["encoder"] > 0 and set(records[1]["lr"]) == {"generator", "latent", "encoder"}


def test_stage1_keeps_the_last_smaller_batch_as_published(synthetic32_base, tmp_path, run_cli):
    """96 images in batches of 20: stage 1 takes 5 steps an epoch (the last of 16 images), stage 2 takes 4."""
    base = tmp_path / "base"
    shutil.copytree(synthetic32_base, base)
    common = ["-bd", base, "-q", "--device", "cpu"]
    assert run_cli(*common, "train", "-dn", "syn32", "-mn", "m", "-cf", "overlord-tiny",
                   *overlord_set_args("none", "disentanglement.n_epochs=1", "disentanglement.batch_size=20",
                                      "amortization.n_epochs=1", "amortization.batch_size=20")).code == 0
    assert run_cli(*common, "train-encoders", "-dn", "syn32", "-mn", "m").code == 0
    records = metrics(BaseDir(base).model_dir("m"))
    assert [(record["stage"], record["step"]) for record in records] == [("latent", 5), ("amortized", 4)]
