import pytest
import torch

from lord.networks.lord import AdaIN, Encoder, Generator, Modulation


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_and_encoder_shapes(size, channels):
    generator = Generator(content_dim=16, class_dim=8, img_shape=(size, size, channels), n_adain_layers=4,
                          adain_dim=16, final_conv_dim=8)
    images = generator(torch.randn(2, 16), torch.randn(2, 8))
    assert images.shape == (2, channels, size, size)
    assert images.min() >= 0 and images.max() <= 1
    encoder = Encoder((size, size, channels), code_dim=5, channels=(8, 8, 8, 8, 8), fc_dim=16)
    assert encoder(images).shape == (2, 5)


def test_paper_generator_at_64_pixels():
    generator = Generator(128, 256, (64, 64, 3))
    assert generator.initial_shape == (256, 4, 4)
    assert len(generator.upsample_convs) == 4
    assert generator.modulation.linear.out_features == 4 * 256 * 2
    assert generator.last_convs[0].kernel_size == (5, 5) and generator.last_convs[2].kernel_size == (7, 7)


def test_class_code_changes_the_image_through_adain():
    torch.manual_seed(0)
    generator = Generator(8, 8, (32, 32, 3), n_adain_layers=3, adain_dim=16, final_conv_dim=8)
    content = torch.randn(1, 8)
    first = generator(content, torch.randn(1, 8))
    second = generator(content, torch.randn(1, 8))
    assert (first - second).abs().max() > 1e-3


def test_adain_normalises_then_applies_the_given_affine():
    x = torch.randn(3, 4, 8, 8) * 5 + 2
    scale, bias = torch.rand(3, 4) + 0.5, torch.randn(3, 4)
    out = AdaIN()(x, scale, bias)
    torch.testing.assert_close(out.mean(dim=(2, 3)), bias, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(dim=(2, 3), unbiased=False), scale, atol=1e-3, rtol=1e-3)


def test_modulation_layout():
    params = Modulation(class_dim=6, n_adain_layers=3, adain_dim=5)(torch.randn(2, 6))
    assert params.shape == (2, 3, 5, 2)


def test_sizes_not_divisible_are_rejected():
    with pytest.raises(ValueError):
        Generator(8, 8, (40, 40, 3), n_adain_layers=4)
    with pytest.raises(ValueError):
        Encoder((24, 24, 3), 4)


def test_centered_encoder_reads_two_x_minus_one_and_the_config_key_builds_it():
    import config as presets
    from lord.model import AmortizedModel

    torch.manual_seed(0)
    plain = Encoder((16, 16, 3), 4, channels=(8, 8, 8, 8, 8), fc_dim=8)
    centered = Encoder((16, 16, 3), 4, channels=(8, 8, 8, 8, 8), fc_dim=8, center_input=True)
    centered.load_state_dict(plain.state_dict())
    images = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(centered(images), plain(images * 2 - 1), atol=1e-7, rtol=0)
        assert (centered(images) - plain(images)).abs().max() > 1e-5
    assert presets.get_config("lord")["encoder"]["center_input"] is False
    for expected in (False, True):
        config = presets.get_config("lord")
        config["encoder"]["center_input"] = expected
        config["data"] = {"img_shape": [64, 64, 3], "n_classes": 2, "n_images": 4}
        model = AmortizedModel(config)
        assert model.content_encoder.center_input is expected and model.class_encoder.center_input is expected
