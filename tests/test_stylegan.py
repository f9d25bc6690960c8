import pytest
import torch

from lord.networks.gan_losses import (
    discriminator_adversarial_loss,
    generator_adversarial_loss,
    r1_penalty,
)
import torch.nn.functional as F

from lord.networks.stylegan import (
    Blur,
    Discriminator,
    Encoder,
    EqualConv2d,
    EqualLinear,
    FusedLeakyReLU,
    Generator,
    ModulatedConv2d,
    ResBlock,
    ResidualBlock,
    Upsample,
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


ENCODER_TINY = dict(dim_in=8, max_conv_dim=16)


@pytest.mark.parametrize("img_size, channel_base, channel_max", [
    (32, 512, 32), (64, 512, 32), (128, 512, 32), (256, 512, 8),
])
@pytest.mark.parametrize("img_channels", [1, 3])
def test_shapes(img_size, channel_base, channel_max, img_channels):
    channels = dict(channel_base=channel_base, channel_max=channel_max)
    generator = Generator(12, img_size, img_channels, **channels)
    discriminator = Discriminator(img_size, img_channels, **channels)
    encoder = Encoder(img_size, img_channels, 7, **ENCODER_TINY)
    imgs = generator(torch.randn(2, 12))
    assert imgs.shape == (2, img_channels, img_size, img_size)
    assert discriminator(imgs).shape == (2,)
    assert encoder(imgs).shape == (2, 7)
    assert torch.isfinite(imgs).all()


def test_published_widths_and_layout_at_64px():
    """StyleGAN2's config-f widths (rosinality's channel_multiplier 2) and the published module names."""
    generator = Generator(8, 64, 3)
    assert generator.input.input.shape == (1, 512, 4, 4)
    assert generator.conv1.conv.weight.shape == (512, 512, 3, 3)
    assert generator.to_rgb1.bias.shape == (1, 3, 1, 1) and not hasattr(generator.to_rgb1, "upsample")
    assert [conv.conv.upsample for conv in generator.convs] == [True, False] * 4
    assert generator.convs[-1].conv.weight.shape == (512, 512, 3, 3)
    assert generator.convs[0].conv.modulation.bias.detach().eq(1).all()
    assert not any("noise" in name for name in generator.state_dict())
    discriminator = Discriminator(64, 3)
    assert discriminator.convs[0][0].weight.shape == (512, 3, 1, 1)
    assert discriminator.convs[1].skip[1].bias is None and len(discriminator.convs) == 5
    assert discriminator.final_linear[0].weight.shape == (512, 512 * 16)
    encoder = Encoder(64, 3, 10)
    widths = [block.conv2.out_channels for block in encoder.main if isinstance(block, ResidualBlock)]
    assert widths == [128, 256, 256, 256]
    assert encoder.main[0].weight.shape == (64, 3, 3, 3) and encoder.main[-1].weight.shape == (10, 256, 1, 1)
    assert encoder.main[-3].kernel_size == (4, 4)


def test_channel_counts_follow_the_arguments():
    generator = Generator(8, 64, 3, channel_base=1024, channel_max=64)
    assert generator.input.input.shape[1] == 64
    assert generator.to_rgbs[-1].conv.weight.shape == (3, 1024 // 64, 1, 1)
    discriminator = Discriminator(64, 1, channel_base=1024, channel_max=64)
    assert discriminator.convs[0][0].weight.shape == (1024 // 64, 1, 1, 1)


@pytest.mark.parametrize("img_size", [16, 48, 1024, 100])
def test_bad_image_size_raises(img_size):
    with pytest.raises(ValueError, match="power of two"):
        Generator(8, img_size, 3, **TINY)
    with pytest.raises(ValueError, match="power of two"):
        Discriminator(img_size, 3, **TINY)


def test_too_few_channels_raises():
    with pytest.raises(ValueError, match="no channels"):
        Generator(8, 512, 3, channel_base=256, channel_max=16)


def modulated_output_std_per_sample(demodulate):
    conv = ModulatedConv2d(64, 64, 3, style_dim=16, demodulate=demodulate)
    style = torch.randn(3, 16) * torch.tensor([0.3, 2.0, 5.0])[:, None]
    with torch.no_grad():
        out = conv(torch.randn(3, 64, 32, 32), style)
    return out.flatten(1).std(dim=1)


def test_demodulation_keeps_unit_variance():
    std = modulated_output_std_per_sample(demodulate=True)
    assert torch.allclose(std, torch.ones(3), rtol=0.1), std


def test_without_demodulation_variance_follows_the_styles():
    std = modulated_output_std_per_sample(demodulate=False)
    assert (std - 1).abs().max() > 0.5, std


def reference_blur(x, pad, gain, up=1):
    """upfirdn2d written out: zero insertion, padding (before, after), the flipped 4x4 [1, 3, 3, 1] filter."""
    batch, channels, height, width = x.shape
    if up > 1:
        spread = torch.zeros(batch, channels, height * up, width * up, dtype=x.dtype)
        spread[:, :, ::up, ::up] = x
        x = spread
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=x.dtype)
    kernel = torch.outer(taps, taps) / 64 * gain
    return F.conv2d(x, kernel.flip(0, 1).expand(channels, 1, 4, 4), groups=channels)


@pytest.mark.parametrize("upsample", [False, True])
def test_modulated_conv_matches_per_sample_weights(upsample):
    """The input-scaling form equals StyleGAN2's grouped convolution with each sample's modulated,
    demodulated weight; upsampling is a stride-2 transposed convolution followed by the blur."""
    conv = ModulatedConv2d(5, 4, 3, style_dim=6, upsample=upsample).double()
    x, style = torch.randn(2, 5, 8, 8).double(), torch.randn(2, 6).double()
    styles = conv.modulation(style)
    expected = []
    for sample in range(2):
        weight = conv.weight * conv.scale * styles[sample][None, :, None, None]
        weight = weight / weight.square().sum(dim=(1, 2, 3), keepdim=True).add(1e-8).sqrt()
        if upsample:
            out = F.conv_transpose2d(x[sample:sample + 1], weight.transpose(0, 1), stride=2)
            expected.append(reference_blur(out, (1, 1), gain=4.0))
        else:
            expected.append(F.conv2d(x[sample:sample + 1], weight, padding=1))
    out = conv(x, style)
    assert out.shape == (2, 4, 16 if upsample else 8, 16 if upsample else 8)
    assert torch.allclose(out, torch.cat(expected), atol=1e-10)


def test_upsample_and_blur_are_upfirdn2d():
    x = torch.randn(2, 3, 5, 5).double()
    torch.testing.assert_close(Upsample().double()(x), reference_blur(x, (2, 1), gain=4.0, up=2))
    torch.testing.assert_close(Blur((2, 2)).double()(x), reference_blur(x, (2, 2), gain=1.0))
    assert Upsample()(x.float()).shape == (2, 3, 10, 10)


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
    assert discriminator.convs[0][0].weight.grad.abs().sum() > 0


def test_r1_under_bf16_autocast_is_float32_and_close():
    discriminator = Discriminator(32, 3, channel_base=128, channel_max=8)
    imgs = torch.rand(2, 3, 32, 32, requires_grad=True)
    reference = r1_penalty(imgs, discriminator(imgs)).mean()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        penalty = r1_penalty(imgs, discriminator(imgs)).mean()
    assert penalty.dtype == torch.float32
    assert torch.allclose(penalty, reference, rtol=0.1)
    penalty.backward()
    assert torch.isfinite(discriminator.convs[0][0].weight.grad).all()


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
    generator = Generator(8, 32, 3, **TINY)
    code = torch.randn(2, 8, requires_grad=True)
    assert_every_parameter_gets_gradient(generator, generator(code))
    assert code.grad.abs().sum() > 0


def test_gradients_reach_every_discriminator_parameter():
    discriminator = Discriminator(32, 3, **TINY)
    assert_every_parameter_gets_gradient(discriminator, discriminator(torch.rand(3, 3, 32, 32)))


def test_gradients_reach_every_encoder_parameter():
    encoder = Encoder(32, 1, 5, **ENCODER_TINY)
    assert_every_parameter_gets_gradient(encoder, encoder(torch.rand(2, 1, 32, 32)))


@pytest.mark.parametrize("batch", [1, 3, 5, 6])
def test_discriminator_any_batch_size(batch):
    discriminator = Discriminator(32, 3, mbstd_group_size=4, **TINY)
    logits = discriminator(torch.rand(batch, 3, 32, 32))
    assert logits.shape == (batch,)
    assert torch.isfinite(logits).all()


def test_minibatch_std_groups_as_stylegan2():
    """Sample b is in group b mod (B / G): with B = 8 and G = 4, samples 0, 2, 4, 6 and 1, 3, 5, 7."""
    x = torch.randn(8, 2, 4, 4)
    stat = minibatch_std(x, group_size=4)[:, -1]
    assert stat.shape == (8, 4, 4)
    even = x[0::2].std(dim=0, unbiased=False).mean()
    odd = x[1::2].std(dim=0, unbiased=False).mean()
    assert torch.allclose(stat[0::2], even.expand(4, 4, 4), atol=1e-5)
    assert torch.allclose(stat[1::2], odd.expand(4, 4, 4), atol=1e-5)
    assert torch.equal(minibatch_std(x, 4)[:, :2], x)
    # 6 is not divisible by 4: groups of 3, samples b and b + 2 and b + 4
    six = minibatch_std(x[:6], group_size=4)[:, -1]
    assert torch.allclose(six[0], x[0:6:2].std(dim=0, unbiased=False).mean().expand(4, 4), atol=1e-5)


def test_minibatch_std_single_sample_is_finite():
    stat = minibatch_std(torch.randn(1, 3, 4, 4), group_size=4)[:, -1]
    assert torch.allclose(stat, torch.zeros_like(stat), atol=1e-3)


def test_channels_last_matches_contiguous():
    generator = Generator(8, 32, 3, **TINY)
    discriminator = Discriminator(32, 3, **TINY)
    code = torch.randn(2, 8)
    with torch.no_grad():
        imgs = generator(code)
        logits = discriminator(imgs)
        generator.to(memory_format=torch.channels_last)
        discriminator.to(memory_format=torch.channels_last)
        imgs_cl = generator(code)
        logits_cl = discriminator(imgs_cl.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(imgs, imgs_cl, atol=1e-5)
    assert torch.allclose(logits, logits_cl, atol=1e-5)


def test_generator_can_fit_a_fixed_target():
    generator = Generator(8, 32, 1, **TINY)
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


def published_res_block(block, x):
    """A ResBlock computed as the published layers do: each module on its own (bias, activation and
    gain as separate passes), the sum divided by sqrt(2) afterwards."""
    import math

    def conv_layer(layer, x):
        for module in layer:
            if isinstance(module, FusedLeakyReLU):
                x = F.leaky_relu(x + module.bias.view(1, -1, 1, 1), 0.2) * math.sqrt(2)
            elif isinstance(module, EqualConv2d):
                x = F.conv2d(x, module.weight * module.scale, module.bias, stride=module.stride,
                             padding=module.padding)
            else:
                x = module(x)
        return x

    return (conv_layer(block.conv2, conv_layer(block.conv1, x)) + conv_layer(block.skip, x)) / math.sqrt(2)


def test_folded_bias_gain_and_activation_compute_the_published_layers_and_their_r1_gradients():
    block = ResBlock(4, 6)
    for parameter in block.parameters():
        parameter.data.add_(torch.randn_like(parameter) * 0.3)  # biases away from 0
    x = torch.randn(3, 4, 8, 8, requires_grad=True)
    results = []
    for compute in (block, lambda inputs: published_res_block(block, inputs)):
        out = compute(x)
        (input_gradient,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
        block.zero_grad(set_to_none=True)
        input_gradient.square().sum().backward()  # an R1-style double backward
        results.append([out, input_gradient, *[p.grad.clone() for p in block.parameters()]])
    for ours, published in zip(*results):
        assert (ours - published).abs().max() <= 1e-5 * max(1.0, published.abs().max().item())
    linear = EqualLinear(5, 7, bias_init=0.5, lr_mul=0.1, activation=True)
    code = torch.randn(2, 5)
    published = F.leaky_relu(F.linear(code, linear.weight * linear.scale) + linear.bias * linear.lr_mul, 0.2) * 2**0.5
    torch.testing.assert_close(linear(code), published, rtol=1e-5, atol=1e-6)
