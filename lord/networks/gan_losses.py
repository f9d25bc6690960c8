"""StyleGAN2's adversarial losses: non-saturating logistic loss and the R1 gradient penalty.

Each returns one value per image; averaging is the caller's (a distributed step divides the sum over
a process's images by the global batch size).
"""

import torch
import torch.nn.functional as F


def generator_adversarial_loss(fake_logits):
    """Non-saturating: the generator's gradient stays strong while the discriminator rejects its images."""
    return F.softplus(-fake_logits.float())


def discriminator_adversarial_loss(real_logits, fake_logits):
    """Logistic loss: real images pushed to positive logits, generated ones to negative logits."""
    return F.softplus(-real_logits.float()) + F.softplus(fake_logits.float())


def r1_penalty(real_images, real_logits):
    """0.5 * |d sum(real_logits) / d real_image|^2 per image, summed over its pixels.

    The caller must set real_images.requires_grad_(True) before computing real_logits from them. The graph
    is kept (create_graph=True) so the penalty can be back-propagated into the discriminator. The gradient
    is taken in float32 (or wider), so the penalty is stable when the logits come from bf16 autocast.
    """
    if not real_images.requires_grad:
        raise ValueError("r1_penalty needs real_images with requires_grad=True, set before computing real_logits")
    dtype = torch.promote_types(real_logits.dtype, torch.float32)
    with torch.autocast(real_images.device.type, enabled=False):
        (gradients,) = torch.autograd.grad(real_logits.to(dtype).sum(), real_images, create_graph=True)
        gradients = gradients.to(torch.promote_types(gradients.dtype, torch.float32))
        return 0.5 * gradients.square().flatten(1).sum(dim=1)
