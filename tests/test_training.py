"""Stages 1 and 2 of LORD on a tiny synthetic set, through the CLI."""

import json

import numpy as np
import pytest
import torch

from conftest import set_args
from lord.assets import BaseDir, lock_path
from lord.data import store
from lord.model import AmortizedModel, LatentModel, load_stage, read_config
from lord.training.embeddings import EmbeddingAdam


def metrics(model_dir, stage):
    lines = (model_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if json.loads(line)["stage"] == stage]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_base):
    """One model trained through both stages, shared by the read-only tests below."""
    import shutil

    from conftest import CLI

    base = tmp_path_factory.mktemp("trained")
    shutil.copytree(synthetic_base, base, dirs_exist_ok=True)
    assert CLI.main(["-bd", str(base), "-q", "train", "-dn", "syn", "-mn", "m", "-cf", "lord-tiny",
                     *set_args("train.n_epochs=4", "train.learning_rate.latent=0.01",
                               "train.learning_rate.generator=0.001")]) == 0
    assert CLI.main(["-bd", str(base), "-q", "train-encoders", "-dn", "syn", "-mn", "m",
                     "--set", "train_encoders.n_epochs=4", "--set", "train_encoders.learning_rate.max=0.003"]) == 0
    return base, BaseDir(base).model_dir("m")


def test_stage1_reconstruction_falls_clearly(trained):
    _, model_dir = trained
    epochs = metrics(model_dir, "latent")
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    assert epochs[-1]["reconstruction"] < 0.6 * epochs[0]["reconstruction"]


def test_stage2_codes_approach_stage1_codes(trained):
    base, model_dir = trained
    epochs = metrics(model_dir, "amortized")
    assert epochs[-1]["content_regression"] < epochs[0]["content_regression"]
    assert epochs[-1]["class_regression"] < 0.5 * epochs[0]["class_regression"]
    config = read_config(model_dir)
    latent, amortized = load_stage(model_dir, "latent", config), load_stage(model_dir, "amortized", config)
    data = store.load(BaseDir(base).data_path("syn"))
    images = torch.from_numpy(data.imgs).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        class_codes = amortized.class_encoder(images)
        content_codes = amortized.content_encoder(images)
    class_targets = latent.class_embedding.weight[torch.from_numpy(data.classes)]
    content_targets = latent.content_embedding.weight
    torch.manual_seed(0)
    untrained = AmortizedModel(config)
    with torch.no_grad():
        class_before = ((untrained.class_encoder(images) - class_targets) ** 2).mean()
        content_before = ((untrained.content_encoder(images) - content_targets) ** 2).mean()
    class_after = ((class_codes - class_targets) ** 2).mean()
    content_after = ((content_codes - content_targets) ** 2).mean()
    assert class_after < 0.2 * class_before
    assert content_after < 0.5 * content_before


def test_model_directory_contents(trained):
    base, model_dir = trained
    config = json.loads((model_dir / "config.json").read_text())
    assert config["config_name"] == "lord-tiny" and config["adain_dim"] == 16
    assert config["data"]["name"] == "syn" and config["data"]["img_shape"] == [16, 16, 3]
    assert config["data"]["n_images"] == 3 * 432 and config["data"]["n_classes"] == 3
    for name, module in (("latent.pt", LatentModel(config)), ("amortized.pt", AmortizedModel(config))):
        state = torch.load(model_dir / name, weights_only=True)
        assert set(state) == set(module.state_dict())
    for record in metrics(model_dir, "latent") + metrics(model_dir, "amortized"):
        assert {"stage", "epoch", "step", "loss", "lr", "seconds", "images_per_second"} <= set(record)
    samples = sorted(p.name for p in (model_dir / "samples").iterdir())
    assert samples == [f"amortized-epoch-000{i}.png" for i in range(1, 5)] + [f"latent-epoch-000{i}.png" for i in range(1, 5)]
    events = list(BaseDir(base).tensorboard_dir("m").glob("events.out.tfevents.*"))
    assert events and all(path.stat().st_size > 100 for path in events)
    assert not list(model_dir.glob(".*tmp*")) and not lock_path(model_dir).exists()


def test_translation_grid_layout(trained):
    from PIL import Image

    _, model_dir = trained
    grid = np.asarray(Image.open(model_dir / "samples" / "latent-epoch-0004.png"))
    # 4 samples: a header row and column plus 4x4 cells of 16 px with separators
    assert grid.shape[0] == grid.shape[1] and grid.shape[0] >= 5 * 16


def test_existing_model_needs_overwrite(trained, run_cli):
    base, model_dir = trained
    before = (model_dir / "latent.pt").read_bytes()
    result = run_cli("-bd", base, "train", "-dn", "syn", "-mn", "m", "-cf", "lord-tiny", *set_args())
    assert result.code != 0 and "--overwrite" in result.err and len(result.err_lines) == 1
    assert (model_dir / "latent.pt").read_bytes() == before
    result = run_cli("-bd", base, "train-encoders", "-dn", "syn", "-mn", "m")
    assert result.code != 0 and "--overwrite" in result.err


def test_overwrite_replaces_the_model(base_with_data, run_cli):
    args = ["-bd", base_with_data, "-q", "train", "-dn", "syn", "-mn", "m", "-cf", "lord-tiny",
            *set_args("train.n_epochs=1")]
    assert run_cli(*args).code == 0
    model_dir = BaseDir(base_with_data).model_dir("m")
    (model_dir / "samples" / "old-marker.png").write_bytes(b"x")
    assert run_cli(*args, "--overwrite", "--set", "content_dim=4").code == 0
    assert read_config(model_dir)["content_dim"] == 4
    assert not (model_dir / "samples" / "old-marker.png").exists()


def test_train_encoders_before_train_is_refused(base_with_data, run_cli):
    result = run_cli("-bd", base_with_data, "train-encoders", "-dn", "syn", "-mn", "nothing")
    assert result.code != 0 and "no model named 'nothing'" in result.err


def test_rows_embedding_update_trains(base_with_data, run_cli):
    result = run_cli("-bd", base_with_data, "-q", "train", "-dn", "syn", "-mn", "rows", "-cf", "lord-tiny",
                     *set_args("train.n_epochs=3", "train.embedding_update=rows"))
    assert result.code == 0, result
    epochs = metrics(BaseDir(base_with_data).model_dir("rows"), "latent")
    assert epochs[-1]["reconstruction"] < 0.7 * epochs[0]["reconstruction"]


@pytest.mark.parametrize("mode", ["dense", "rows"])
def test_embedding_adam_equals_adam_when_every_row_is_in_every_batch(mode):
    torch.manual_seed(0)
    table = torch.randn(6, 4)
    reference = table.clone().requires_grad_()
    optimizer = torch.optim.Adam([reference], lr=0.01, betas=(0.5, 0.999))
    adam = EmbeddingAdam(table, mode, betas=(0.5, 0.999))
    for step in range(5):
        grad = torch.randn(6, 4)
        reference.grad = grad.clone()
        optimizer.step()
        order = torch.randperm(6)
        adam.step(order, grad[order], lr=0.01)
    torch.testing.assert_close(table, reference.detach(), rtol=1e-5, atol=1e-6)


def test_dense_embedding_adam_equals_adam_on_partial_batches():
    torch.manual_seed(0)
    table = torch.randn(8, 3)
    reference = table.clone().requires_grad_()
    optimizer = torch.optim.Adam([reference], lr=0.05, betas=(0.5, 0.999))
    adam = EmbeddingAdam(table, "dense", betas=(0.5, 0.999))
    for step in range(6):
        rows = torch.randperm(8)[:3]
        grad = torch.randn(3, 3)
        full = torch.zeros(8, 3)
        full[rows] = grad
        reference.grad = full
        optimizer.step()
        adam.step(rows, grad, lr=0.05)
    torch.testing.assert_close(table, reference.detach(), rtol=1e-5, atol=1e-6)


def test_rows_embedding_adam_leaves_other_rows_alone():
    table = torch.zeros(5, 3)
    adam = EmbeddingAdam(table, "rows")
    adam.step(torch.tensor([1, 3]), torch.ones(2, 3), lr=0.1)
    adam.step(torch.tensor([0]), torch.ones(1, 3), lr=0.1)
    assert (table[[2, 4]] == 0).all() and (table[[0, 1, 3]] < 0).all()
    torch.testing.assert_close(table[0], table[1])  # each row's own bias correction: one step each


def test_perceptual_loss_training_with_vgg_weights(base_with_data, run_cli, tmp_path, monkeypatch):
    from test_vgg import fake_vgg16_file

    fake_vgg16_file(tmp_path / "vgg.pth", up_to=12)
    result = run_cli("-bd", base_with_data, "-q", "train", "-dn", "syn", "-mn", "vgg", "-cf", "lord-tiny",
                     *set_args("train.n_epochs=1", "perceptual_loss.type=vgg", "perceptual_loss.layers=[2,7,12]",
                               f"perceptual_loss.weights={tmp_path / 'vgg.pth'}"))
    assert result.code == 0, result
    assert np.isfinite(metrics(BaseDir(base_with_data).model_dir("vgg"), "latent")[0]["reconstruction"])


def test_missing_vgg_weights_leave_nothing(base_with_data, run_cli, monkeypatch, tmp_path):
    monkeypatch.setenv("LORD_VGG16_WEIGHTS", str(tmp_path / "missing.pth"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    result = run_cli("-bd", base_with_data, "train", "-dn", "syn", "-mn", "v", "-cf", "lord-tiny",
                     *set_args("perceptual_loss.type=vgg"))
    assert result.code != 0 and len(result.err_lines) == 1 and "LORD_VGG16_WEIGHTS" in result.err
    assert not BaseDir(base_with_data).model_dir("v").exists()


def test_non_finite_loss_names_the_step_and_keeps_the_last_checkpoint(base_with_data, run_cli, monkeypatch):
    from lord.training.latent import LatentStage

    train_step = LatentStage.train_step

    def poisoned(self, batch, step, total_steps):
        losses = train_step(self, batch, step, total_steps)
        if step == 57:
            losses["loss"] = losses["loss"] * float("nan")
        return losses

    monkeypatch.setattr(LatentStage, "train_step", poisoned)
    result = run_cli("-bd", base_with_data, "-q", "train", "-dn", "syn", "-mn", "nan", "-cf", "lord-tiny",
                     *set_args("train.n_epochs=3"))  # 40 steps an epoch
    assert result.code != 0 and len(result.err_lines) == 1
    assert "non-finite loss at step 57 (epoch 2)" in result.err and "last good checkpoint" in result.err
    model_dir = BaseDir(base_with_data).model_dir("nan")
    checkpoint = torch.load(model_dir / "checkpoint-latent.pt", weights_only=True)
    assert checkpoint["global_step"] <= 57
    assert all(torch.isfinite(value).all() for value in checkpoint["stage_state"]["model"].values())
    assert not (model_dir / "latent.pt").exists() and not lock_path(model_dir).exists()


def test_one_class_data_is_refused(base_with_data, run_cli):
    from lord.data import store as data_store

    dataset = data_store.load(BaseDir(base_with_data).data_path("syn"))
    one = dataset.subset(np.flatnonzero(dataset.classes == 0))
    data_store.save(BaseDir(base_with_data).data_path("one"), one)
    result = run_cli("-bd", base_with_data, "train", "-dn", "one", "-mn", "x", "-cf", "lord-tiny", *set_args())
    assert result.code != 0 and "single value" in result.err and len(result.err_lines) == 1


def translated_stage(trained, fraction, seed=0):
    from lord.configuration import apply_overrides
    from lord.model import load_tensors
    from lord.training.amortized import AmortizedStage

    base, model_dir = trained
    config = apply_overrides(read_config(model_dir), [f"train_encoders.translated_fraction={fraction}"])
    dataset = store.load(BaseDir(base).data_path("syn"))
    latent_state = load_tensors(model_dir / "latent.pt")
    return AmortizedStage(config, dataset, torch.device("cpu"), latent_state, seed=seed), latent_state, dataset


def test_translated_fraction_replaces_that_share_of_a_batch_with_stage1_translations(trained):
    from lord.training.common import autocast
    from lord.training.loop import Batch

    stage, latent_state, dataset = translated_stage(trained, 0.25)
    rows = torch.arange(8, 40)
    batch = Batch(indices=rows, rows=rows, size=32)
    images = stage.images.batch(rows)
    real_classes = torch.as_tensor(dataset.classes[rows.numpy()])
    translated, class_ids = stage.translate(batch, images, real_classes.clone())
    assert torch.equal(translated[8:], images[8:]) and torch.equal(class_ids[8:], real_classes[8:])
    generator = LatentModel(read_config(trained[1]))
    generator.load_state_dict(latent_state)
    with torch.no_grad(), autocast(stage.device, stage.amp):
        expected = generator.generator(latent_state["content_embedding.weight"][rows[:8]],
                                       latent_state["class_embedding.weight"][class_ids[:8]]).float()
    assert torch.allclose(translated[:8], expected, atol=1e-6)
    assert not torch.allclose(translated[:8], images[:8], atol=0.05)
    assert len(set(class_ids[:8].tolist())) > 1, "the translations' classes are drawn at random"


def test_translated_fraction_trains_the_encoders_on_translations_with_a_frozen_stage1_generator(trained):
    from lord.training.loop import Batch

    stage, latent_state, _ = translated_stage(trained, 0.5)
    teacher_before = {k: v.clone() for k, v in stage.teacher.state_dict().items()}
    rows = torch.arange(32)
    seen = []
    original = stage.network.forward
    stage.network.forward = lambda images: seen.append(images.clone()) or original(images)
    for step in range(3):
        stage.train_step(Batch(indices=rows, rows=rows, size=32), step, 3)
    assert not torch.allclose(seen[0][:16], stage.images.batch(rows)[:16], atol=0.05)
    assert torch.equal(seen[0][16:], stage.images.batch(rows)[16:])
    assert all(torch.equal(v, stage.teacher.state_dict()[k]) for k, v in teacher_before.items())
    assert any(not torch.equal(v, stage.model.generator.state_dict()[k]) for k, v in teacher_before.items())
    assert not any(p.requires_grad for p in stage.teacher.parameters())
    plain, _, _ = translated_stage(trained, 0.0)
    assert not hasattr(plain, "teacher") and plain.rng is None


def test_translated_fraction_outside_zero_to_one_is_refused(trained, run_cli):
    base, _ = trained
    result = run_cli("-bd", base, "train-encoders", "-dn", "syn", "-mn", "m", "--overwrite",
                     "--set", "train_encoders.translated_fraction=1.5")
    assert result.code != 0 and "translated_fraction" in result.err and len(result.err_lines) == 1
