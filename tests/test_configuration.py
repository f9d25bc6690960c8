import math

import pytest

import config
from lord.configuration import apply_overrides
from lord.errors import UserError


def test_presets_have_the_published_lord_settings():
    lord = config.get_config("lord")
    assert (lord["content_dim"], lord["class_dim"], lord["content_std"], lord["content_decay"]) == (128, 256, 1.0, 1e-4)
    assert (lord["n_adain_layers"], lord["adain_dim"]) == (4, 256)
    assert lord["perceptual_loss"]["layers"] == [2, 7, 12, 21, 30]
    assert lord["train"]["batch_size"] == 128 and lord["train"]["n_epochs"] == 200
    assert lord["train"]["learning_rate"] == {"generator": 3e-4, "latent": 3e-3, "min": 1e-5}
    assert lord["train_encoders"]["learning_rate"] == {"max": 1e-4, "min": 1e-5}
    assert config.get_config("lord-tiny")["perceptual_loss"]["type"] == "l1"


def test_get_config_returns_independent_copies():
    first = config.get_config("lord")
    first["train"]["batch_size"] = 1
    assert config.get_config("lord")["train"]["batch_size"] == 128


def test_overrides_parse_and_keep_types():
    result = apply_overrides(config.get_config("lord"), [
        "train.n_epochs=3", "content_std=0", "perceptual_loss.type=l1", "perceptual_loss.layers=[2, 7]",
        "perceptual_loss.weights=/tmp/w.pth", "runtime.compile=true",
    ])
    assert result["train"]["n_epochs"] == 3
    assert result["content_std"] == 0.0 and isinstance(result["content_std"], float)
    assert result["perceptual_loss"]["layers"] == [2, 7]
    assert result["perceptual_loss"]["weights"] == "/tmp/w.pth"
    assert result["runtime"]["compile"] is True


@pytest.mark.parametrize("override, message", [
    ("train.n_epoch=3", "did you mean train.n_epochs"),
    ("nothing=1", "unknown config key"),
    ("train.n_epochs=2.5", "expected an integer"),
    ("train.n_epochs=0", "at least 1"),
    ("train.n_epochs=-3", "at least 1"),
    ("content_std=NaN", "finite"),
    ("content_std=-1", "must not be negative"),
    ("train.learning_rate.latent=0", "positive"),
    ("perceptual_loss.type=lpips", "one of"),
    ("runtime.compile=1", "true or false"),
    ("train.n_epochs", "KEY=VALUE"),
    ("train=1", "cannot override the group"),
])
def test_bad_overrides_are_user_errors(override, message):
    with pytest.raises(UserError, match=message):
        apply_overrides(config.get_config("lord"), [override])


def test_overrides_restricted_to_a_stage():
    with pytest.raises(UserError, match="can change at this stage"):
        apply_overrides(config.get_config("lord"), ["content_dim=3"], allowed_prefixes=("train_encoders.",))
    assert math.isclose(
        apply_overrides(config.get_config("lord"), ["train_encoders.learning_rate.max=0.01"],
                        allowed_prefixes=("train_encoders.",))["train_encoders"]["learning_rate"]["max"], 0.01)
