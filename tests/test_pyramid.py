"""The Laplacian pyramid loss of the CPU presets: an exact decomposition, and a distance that sees
layout where a pixel L1 does not."""

import torch
import torch.nn.functional as F

from lord.networks.pyramid import LaplacianLoss, laplacian_pyramid
from lord.networks.vgg import PixelLoss


def blob_at(column, size=32):
    image = torch.zeros(1, 3, size, size)
    image[..., 12:18, column : column + 4] = 1.0
    return image


def test_the_bands_add_back_up_to_the_image():
    images = torch.rand(2, 3, 32, 24)
    bands = laplacian_pyramid(images, n_levels=4)
    assert [band.shape[-2:] for band in bands] == [(32, 24), (16, 12), (8, 6), (4, 3), (2, 2)]
    rebuilt = bands[-1]
    for band in reversed(bands[:-1]):
        rebuilt = band + F.interpolate(rebuilt, scale_factor=2, mode="nearest")[..., : band.shape[-2], : band.shape[-1]]
    assert torch.allclose(rebuilt, images, atol=1e-6)


def test_the_pooling_stops_at_one_pixel():
    assert len(laplacian_pyramid(torch.rand(1, 1, 4, 4), n_levels=6)) == 3


def test_zero_for_equal_images_and_one_value_per_image():
    images = torch.rand(3, 3, 32, 32)
    loss = LaplacianLoss()(images, images)
    assert loss.shape == (3,) and torch.all(loss == 0)


def test_a_blob_drawn_farther_off_costs_more_where_a_pixel_loss_cannot_tell():
    target = blob_at(4)
    near, far = blob_at(10), blob_at(24)
    pixel = PixelLoss()
    assert torch.isclose(pixel(near, target), pixel(far, target))
    laplacian = LaplacianLoss()
    assert laplacian(far, target) > 1.2 * laplacian(near, target)
