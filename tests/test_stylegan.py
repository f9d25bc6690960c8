import pytest
import torch

from lord.networks.gan_losses import (
    discriminator_adversarial_loss,
    generator_adversarial_loss,
    r1_penalty,
)
from lord.networks.stylegan import (
    Discriminator,
    Encoder,
    Generator,
    ModulatedConv2d,
    minibatch_std,
)

TINY = dict(channel_base=256, channel_max=16)


@pytest.fixture(autouse=True)
def seed_and_single_thread():
    """Tiny layers run faster on one thread than paying for thread synchronisation on every op."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("img_size, channel_base, channel_max", [
    (32, 512, 32), (64, 512, 32), (128, 512, 32), (256, 512, 8),
])
@pytest.mark.parametrize("img_channels", [1, 3])
@pytest.mark.parametrize("mapping_layers", [0, 2])
def test_shapes(img_size, channel_base, channel_max, img_channels, mapping_layers):
    channels = dict(channel_base=channel_base, channel_max=channel_max)
    generator = Generator(12, img_size, img_channels, mapping_layers=mapping_layers, **channels)
    discriminator = Discriminator(img_size, img_channels, **channels)
    encoder = Encoder(img_size, img_channels, 7, **channels)
    imgs = generator(torch.randn(2, 12))
    assert imgs.shape == (2, img_channels, img_size, img_size)
    assert discriminator(imgs).shape == (2,)
    assert encoder(imgs).shape == (2, 7)
    assert torch.isfinite(imgs).all()


def test_default_channels_at_32px():
    generator = Generator(8, 32, 3)
    assert generator.const.shape == (1, 512, 4, 4)
    assert generator(torch.randn(1, 8)).shape == (1, 3, 32, 32)


def test_channel_counts_follow_the_arguments():
    generator = Generator(8, 64, 3, channel_base=1024, channel_max=64)
    assert generator.const.shape[1] == 64
    assert generator.to_rgbs[-1].conv.weight.shape == (3, 1024 // 64, 1, 1)
    discriminator = Discriminator(64, 1, channel_base=1024, channel_max=64)
    assert discriminator.trunk.from_rgb.weight.shape == (1024 // 64, 1, 1, 1)


@pytest.mark.parametrize("img_size", [16, 48, 1024, 100])
def test_bad_image_size_raises(img_size):
    with pytest.raises(ValueError, match="power of two"):
        Generator(8, img_size, 3, **TINY)
    with pytest.raises(ValueError, match="power of two"):
        Discriminator(img_size, 3, **TINY)
    with pytest.raises(ValueError, match="power of two"):
        Encoder(img_size, 3, 8, **TINY)


def test_too_few_channels_raises():
    with pytest.raises(ValueError, match="no channels"):
        Generator(8, 512, 3, channel_base=256, channel_max=16)


def modulated_output_std_per_sample(demodulate):
    conv = ModulatedConv2d(64, 64, 3, latent_dim=16, demodulate=demodulate)
    latent = torch.randn(3, 16) * torch.tensor([0.3, 2.0, 5.0])[:, None]
    with torch.no_grad():
        out = conv(torch.randn(3, 64, 32, 32), latent)
    return out.flatten(1).std(dim=1)


def test_demodulation_keeps_unit_variance():
    std = modulated_output_std_per_sample(demodulate=True)
    assert torch.allclose(std, torch.ones(3), rtol=0.1), std


def test_without_demodulation_variance_follows_the_styles():
    std = modulated_output_std_per_sample(demodulate=False)
    assert (std - 1).abs().max() > 0.5, std


def test_modulated_conv_matches_per_sample_weights():
    """The input-scaling form equals convolving each sample with its own modulated, demodulated weight."""
    conv = ModulatedConv2d(5, 4, 3, latent_dim=6).double()
    x, latent = torch.randn(2, 5, 8, 8).double(), torch.randn(2, 6).double()
    styles = conv.affine(latent)
    expected = []
    for sample in range(2):
        weight = conv.weight * conv.weight_gain * styles[sample][None, :, None, None]
        weight = weight / weight.square().sum(dim=(1, 2, 3), keepdim=True).add(1e-8).sqrt()
        expected.append(torch.nn.functional.conv2d(x[sample:sample + 1], weight, padding=1))
    assert torch.allclose(conv(x, latent), torch.cat(expected), atol=1e-10)


def tiny_discriminator():
    return Discriminator(32, 3, channel_base=128, channel_max=8).double()


def test_r1_matches_jacobian_and_finite_differences():
    discriminator = tiny_discriminator()
    imgs = torch.rand(3, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    penalty = r1_penalty(imgs, discriminator(imgs))

    jacobian = torch.autograd.functional.jacobian(discriminator, imgs.detach())
    gradient_of_sum = jacobian.sum(dim=0)
    expected = 0.5 * gradient_of_sum.square().flatten(1).sum(dim=1)
    assert penalty.shape == (3,)
    assert torch.allclose(penalty, expected, rtol=1e-4)

    direction = torch.randn_like(imgs)
    step = 1e-5
    with torch.no_grad():
        finite_difference = (discriminator(imgs + step * direction).sum()
                             - discriminator(imgs - step * direction).sum()) / (2 * step)
    assert torch.allclose(finite_difference, (gradient_of_sum * direction).sum(), rtol=1e-4)


def test_r1_can_be_backpropagated():
    discriminator = tiny_discriminator()
    imgs = torch.rand(2, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    r1_penalty(imgs, discriminator(imgs)).mean().backward()
    assert discriminator.trunk.from_rgb.weight.grad.abs().sum() > 0


def test_r1_under_bf16_autocast_is_float32_and_close():
    discriminator = Discriminator(32, 3, channel_base=128, channel_max=8)
    imgs = torch.rand(2, 3, 32, 32, requires_grad=True)
    reference = r1_penalty(imgs, discriminator(imgs)).mean()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        penalty = r1_penalty(imgs, discriminator(imgs)).mean()
    assert penalty.dtype == torch.float32
    assert torch.allclose(penalty, reference, rtol=0.1)
    penalty.backward()
    assert torch.isfinite(discriminator.trunk.from_rgb.weight.grad).all()


def test_r1_without_requires_grad_raises():
    discriminator = tiny_discriminator()
    imgs = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    with pytest.raises(ValueError, match="requires_grad"):
        r1_penalty(imgs, discriminator(imgs))


def test_loss_signs():
    batch = torch.ones(4)
    confident = discriminator_adversarial_loss(real_logits=5 * batch, fake_logits=-5 * batch).mean()
    fooled = discriminator_adversarial_loss(real_logits=-5 * batch, fake_logits=5 * batch).mean()
    assert confident < fooled
    assert generator_adversarial_loss(batch).shape == (4,)
    losses = [generator_adversarial_loss(logit * batch).mean() for logit in (-3.0, 0.0, 3.0)]
    assert losses[0] > losses[1] > losses[2]
    assert torch.allclose(losses[1], torch.log(torch.tensor(2.0)))


def assert_every_parameter_gets_gradient(module, output):
    (output * torch.randn_like(output)).sum().backward()
    missing = [name for name, p in module.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


def test_gradients_reach_every_generator_parameter_and_the_code():
    generator = Generator(8, 32, 3, mapping_layers=2, **TINY)
    code = torch.randn(2, 8, requires_grad=True)
    assert_every_parameter_gets_gradient(generator, generator(code))
    assert code.grad.abs().sum() > 0


def test_gradients_reach_every_discriminator_parameter():
    discriminator = Discriminator(32, 3, **TINY)
    assert_every_parameter_gets_gradient(discriminator, discriminator(torch.rand(3, 3, 32, 32)))


def test_gradients_reach_every_encoder_parameter():
    encoder = Encoder(32, 1, 5, **TINY)
    assert_every_parameter_gets_gradient(encoder, encoder(torch.rand(2, 1, 32, 32)))


@pytest.mark.parametrize("batch", [1, 3, 5])
def test_discriminator_any_batch_size(batch):
    discriminator = Discriminator(32, 3, mbstd_group_size=4, **TINY)
    logits = discriminator(torch.rand(batch, 3, 32, 32))
    assert logits.shape == (batch,)
    assert torch.isfinite(logits).all()


def test_minibatch_std_groups():
    x = torch.randn(10, 2, 4, 4)
    stat = minibatch_std(x, group_size=4)[:, -1]
    assert stat.shape == (10, 4, 4)
    first_group = x[:4].std(dim=0, unbiased=False).mean()
    last_group_with_remainder = x[4:].std(dim=0, unbiased=False).mean()
    assert torch.allclose(stat[:4], first_group.expand(4, 4, 4), atol=1e-5)
    assert torch.allclose(stat[4:], last_group_with_remainder.expand(6, 4, 4), atol=1e-5)
    assert torch.equal(minibatch_std(x, 4)[:, :2], x)


def test_minibatch_std_single_sample_is_finite():
    stat = minibatch_std(torch.randn(1, 3, 4, 4), group_size=4)[:, -1]
    assert torch.allclose(stat, torch.zeros_like(stat), atol=1e-3)


def noisy_generator():
    generator = Generator(8, 32, 3, **TINY)
    with torch.no_grad():
        for layer in generator.convs:
            layer.noise_strength.fill_(1.0)
    return generator


def test_noise_is_reproducible_with_a_seeded_generator():
    generator = noisy_generator()
    code = torch.randn(2, 8)
    with torch.no_grad():
        first = generator(code, noise_generator=torch.Generator().manual_seed(1))
        again = generator(code, noise_generator=torch.Generator().manual_seed(1))
        other = generator(code, noise_generator=torch.Generator().manual_seed(2))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_noise_off_is_deterministic():
    generator = Generator(8, 32, 3, noise=False, **TINY)
    assert not any("noise" in name for name, _ in generator.named_parameters())
    code = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(generator(code), generator(code))


def test_channels_last_matches_contiguous():
    generator = Generator(8, 32, 3, **TINY)
    discriminator = Discriminator(32, 3, **TINY)
    code = torch.randn(2, 8)
    with torch.no_grad():
        imgs = generator(code, noise_generator=torch.Generator().manual_seed(0))
        logits = discriminator(imgs)
        generator.to(memory_format=torch.channels_last)
        discriminator.to(memory_format=torch.channels_last)
        imgs_cl = generator(code, noise_generator=torch.Generator().manual_seed(0))
        logits_cl = discriminator(imgs_cl.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(imgs, imgs_cl, atol=1e-5)
    assert torch.allclose(logits, logits_cl, atol=1e-5)


def test_generator_can_fit_a_fixed_target():
    generator = Generator(8, 32, 1, noise=False, **TINY)
    code = torch.randn(2, 8)
    target = torch.rand(2, 1, 32, 32)
    optimizer = torch.optim.Adam(generator.parameters(), lr=1e-2, betas=(0.0, 0.99))
    losses = []
    for _ in range(10):
        loss = (generator(code) - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
