import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lord.visualize import image_strip, save_png, to_uint8, translation_grid, upscale

REPOSITORY = Path(__file__).resolve().parents[1]


def random_images(rng, shape):
    """Pixel values below 255, so they never look like a separator."""
    return rng.integers(0, 255, shape, dtype=np.uint8)


def test_translation_grid_layout_for_a_non_square_grid():
    rng = np.random.default_rng(0)
    m, n, height, width, pad = 2, 3, 4, 5, 2
    content_imgs = random_images(rng, (n, height, width, 3))
    class_imgs = random_images(rng, (m, height, width, 3))
    translated = random_images(rng, (m, n, height, width, 3))

    grid = translation_grid(content_imgs, class_imgs, translated, pad=pad)

    header_gap = 3 * pad
    assert grid.dtype == np.uint8
    assert grid.shape == (
        (m + 1) * height + header_gap + (m - 1) * pad,
        (n + 1) * width + header_gap + (n - 1) * pad,
        3,
    )
    rows = [0] + [(r + 1) * height + header_gap + r * pad for r in range(m)]
    columns = [0] + [(c + 1) * width + header_gap + c * pad for c in range(n)]
    covered = np.zeros(grid.shape[:2], bool)

    def cell(row, column):
        y, x = rows[row], columns[column]
        covered[y : y + height, x : x + width] = True
        return grid[y : y + height, x : x + width]

    assert (cell(0, 0) == 255).all()
    for c in range(n):
        np.testing.assert_array_equal(cell(0, c + 1), content_imgs[c])
    for r in range(m):
        np.testing.assert_array_equal(cell(r + 1, 0), class_imgs[r])
        for c in range(n):
            np.testing.assert_array_equal(cell(r + 1, c + 1), translated[r, c])
    assert (grid[~covered] == 255).all()


def test_translation_grid_keeps_one_channel_and_checks_shapes():
    rng = np.random.default_rng(1)
    content_imgs = random_images(rng, (2, 3, 3, 1))
    class_imgs = random_images(rng, (1, 3, 3, 1))
    translated = random_images(rng, (1, 2, 3, 3, 1))
    grid = translation_grid(content_imgs, class_imgs, translated, pad=1)
    assert grid.shape == (2 * 3 + 3, 3 * 3 + 3 + 1, 1)
    np.testing.assert_array_equal(grid[6:9, 10:13], translated[0, 1])

    with pytest.raises(ValueError):
        translation_grid(content_imgs, class_imgs, translated.transpose(1, 0, 2, 3, 4))
    with pytest.raises(ValueError):
        translation_grid(content_imgs, class_imgs.repeat(3, axis=-1), translated)


def test_image_strip_layout():
    rng = np.random.default_rng(2)
    imgs = random_images(rng, (3, 4, 5, 3))
    strip = image_strip(imgs, pad=2)
    assert strip.shape == (4, 3 * 5 + 2 * 2, 3)
    for index, x in enumerate([0, 7, 14]):
        np.testing.assert_array_equal(strip[:, x : x + 5], imgs[index])
    assert (strip[:, 5:7] == 255).all() and (strip[:, 12:14] == 255).all()


def test_to_uint8_layouts_clipping_and_rounding():
    values = np.array([-0.5, 0.0, 100.4 / 255, 100.6 / 255, 1.0, 1.5], np.float32)
    expected = np.array([0, 0, 100, 101, 255, 255], np.uint8)
    channels_last = np.zeros((2, 2, 4, 3), np.float32)
    channels_last[1, 0, :2] = values.reshape(2, 3)
    channels_first = channels_last.transpose(0, 3, 1, 2)

    converted = to_uint8(channels_first)
    assert converted.shape == (2, 2, 4, 3) and converted.dtype == np.uint8
    np.testing.assert_array_equal(converted[1, 0, :2].reshape(-1), expected)
    assert converted.sum() == expected.sum()
    np.testing.assert_array_equal(to_uint8(channels_last), converted)

    gray = to_uint8(np.full((1, 1, 4, 6), 0.5))
    assert gray.shape == (1, 4, 6, 1) and (gray == 128).all()

    with pytest.raises(ValueError):
        to_uint8(np.zeros((1, 3, 3, 3)))
    assert to_uint8(np.zeros((1, 3, 3, 3)), channels_first=True).shape == (1, 3, 3, 3)


def test_to_uint8_accepts_a_torch_tensor():
    torch = pytest.importorskip("torch")
    images = torch.rand(2, 3, 4, 5, requires_grad=True)
    converted = to_uint8(images * 1.0)
    assert converted.shape == (2, 4, 5, 3)
    expected = np.rint(images.detach().numpy().transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(converted, expected)


def test_module_does_not_import_torch():
    code = "import sys, lord.visualize; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY).returncode == 0


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_save_png_round_trip(tmp_path, channels, mode):
    image = np.random.default_rng(3).integers(0, 256, (5, 7, channels), dtype=np.uint8)
    path = tmp_path / "samples" / "grid.png"
    save_png(path, image)
    with Image.open(path) as saved:
        assert saved.mode == mode
        pixels = np.asarray(saved)
    np.testing.assert_array_equal(pixels.reshape(image.shape), image)
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]


def test_upscale_repeats_each_pixel():
    image = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)
    enlarged = upscale(image, 3)
    assert enlarged.shape == (6, 9, 1)
    for y in range(2):
        for x in range(3):
            assert (enlarged[3 * y : 3 * y + 3, 3 * x : 3 * x + 3] == image[y, x]).all()
    with pytest.raises(ValueError):
        upscale(image, 0)
