import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lord.data import store, synthetic
from lord.errors import UserError

REPOSITORY = Path(__file__).resolve().parents[1]
N = synthetic.N_CONTENTS
BACKGROUND = np.array(synthetic.BACKGROUND, dtype=np.uint8)


@pytest.fixture(scope="module")
def rgb16():
    return synthetic.load(img_size=16, n_classes=3, channels=3, seed=0, quiet=True)


@pytest.fixture(scope="module")
def rgb32():
    return synthetic.load(img_size=32, n_classes=2, channels=3, seed=0, quiet=True)


def object_pixels(imgs):
    """Where an image differs from the background, (..., H, W) bool."""
    return (imgs != BACKGROUND[: imgs.shape[-1]]).any(axis=-1)


def image_of(dataset, class_id, **levels):
    return dataset.imgs[class_id * N + int(synthetic.content_id(**levels))]


@pytest.mark.parametrize("img_size, channels", [(16, 1), (16, 3), (32, 1), (64, 3)])
def test_shapes_and_dtypes(img_size, channels):
    dataset = synthetic.load(img_size=img_size, n_classes=2, channels=channels, quiet=True)
    count = 2 * N
    assert dataset.imgs.shape == (count, img_size, img_size, channels)
    assert dataset.imgs.dtype == np.uint8
    assert dataset.classes.dtype == np.int64 and dataset.classes.shape == (count,)
    assert dataset.contents.dtype == np.int64 and dataset.contents.shape == (count,)
    assert dataset.n_classes == 2
    masks = dataset.extras["masks"]
    assert masks.dtype == np.uint8 and masks.shape == (count, img_size, img_size)
    assert np.isin(masks, [0, 1]).all()


def test_grayscale_is_the_luminance_of_the_colour_render():
    colour = synthetic.load(img_size=16, n_classes=2, channels=3, quiet=True)
    gray = synthetic.load(img_size=16, n_classes=2, channels=1, quiet=True)
    expected = colour.imgs.astype(np.float64) @ np.array(synthetic.LUMA)
    assert np.abs(gray.imgs[..., 0] - expected).max() <= 1.0
    assert np.array_equal(gray.extras["masks"], colour.extras["masks"])


def test_class_major_order_and_complete_content_grid(rgb16):
    assert np.array_equal(rgb16.classes, np.repeat(np.arange(3), N))
    assert np.array_equal(rgb16.contents, np.tile(np.arange(N), 3))
    pairs = set(zip(rgb16.classes.tolist(), rgb16.contents.tolist()))
    assert len(pairs) == len(rgb16) == 3 * N
    for class_id in range(3):
        assert set(rgb16.contents[rgb16.classes == class_id].tolist()) == set(range(N))
    assert N == 8 * 3 * 3 * 3 * 2


def test_content_factors_round_trip_and_layout():
    ids = np.arange(N)
    factors = synthetic.content_factors(ids)
    assert list(factors) == ["rotation", "scale", "x", "y", "lighting"]
    for name, levels in synthetic.CONTENT_FACTORS.items():
        assert set(factors[name].tolist()) == set(range(len(levels)))
    assert np.array_equal(synthetic.content_id(**factors), ids)
    combos = set(zip(*(factors[name].tolist() for name in factors)))
    assert len(combos) == N
    assert synthetic.content_factors([1])["lighting"].tolist() == [1]
    assert synthetic.content_id(rotation=7, scale=2, x=2, y=2, lighting=1) == N - 1
    with pytest.raises(TypeError):
        synthetic.CONTENT_FACTORS["rotation"] = (0,)


def test_determinism_and_seed_dependence():
    first = synthetic.load(img_size=16, n_classes=2, seed=3, quiet=True)
    again = synthetic.load(img_size=16, n_classes=2, seed=3, quiet=True)
    other = synthetic.load(img_size=16, n_classes=2, seed=4, quiet=True)
    assert np.array_equal(first.imgs, again.imgs)
    assert np.array_equal(first.extras["masks"], again.extras["masks"])
    for class_id in range(2):
        rows = slice(class_id * N, (class_id + 1) * N)
        assert not np.array_equal(first.imgs[rows], other.imgs[rows])


def test_a_smaller_set_is_a_prefix_of_a_larger_one(rgb16):
    smaller = synthetic.load(img_size=16, n_classes=2, seed=0, quiet=True)
    assert np.array_equal(smaller.imgs, rgb16.imgs[: 2 * N])
    assert np.array_equal(smaller.extras["masks"], rgb16.extras["masks"][: 2 * N])


def test_background_colour_and_object_inside_the_frame():
    n_classes = len(synthetic.SHAPES) + 2
    for img_size in (8, 13, 16, 21, 32):
        dataset = synthetic.load(img_size=img_size, n_classes=n_classes, quiet=True)
        imgs = dataset.imgs
        border = np.concatenate([imgs[:, 0], imgs[:, -1], imgs[:, :, 0], imgs[:, :, -1]], axis=1)
        assert (border == BACKGROUND).all(), img_size
        assert object_pixels(imgs).reshape(len(imgs), -1).any(axis=1).all(), img_size


@pytest.mark.parametrize("img_size, channels", [(8, 3), (16, 3), (32, 1)])
def test_masks_are_non_empty_and_inside_the_object(img_size, channels):
    dataset = synthetic.load(img_size=img_size, n_classes=len(synthetic.SHAPES) + 1, channels=channels, quiet=True)
    masks = dataset.extras["masks"].astype(bool)
    assert masks.reshape(len(masks), -1).any(axis=1).all()
    assert object_pixels(dataset.imgs)[masks].all()
    object_area = object_pixels(dataset.imgs).sum(axis=(1, 2))
    assert (masks.sum(axis=(1, 2)) < object_area).all()


def test_images_differ_across_contents_and_across_classes(rgb16):
    imgs = rgb16.imgs.reshape(3, N, -1)
    for class_id in range(3):
        assert len(np.unique(imgs[class_id], axis=0)) == N
    for content in range(N):
        assert len(np.unique(imgs[:, content], axis=0)) == 3


def test_more_classes_than_hand_made_shapes_are_all_distinct():
    n_classes = len(synthetic.SHAPES) + 3
    dataset = synthetic.load(img_size=16, n_classes=n_classes, quiet=True)
    silhouettes = object_pixels(dataset.imgs[:: N]).reshape(n_classes, -1)
    assert len(np.unique(silhouettes, axis=0)) == n_classes


def test_hand_made_shapes_have_no_rotational_symmetry():
    for name, parts in synthetic.SHAPES.items():
        assert synthetic.rotational_overlap(synthetic.normalise(parts)) < 0.8, name


def test_rotation_turns_the_object_counterclockwise(rgb32):
    for class_id in range(2):
        upright = object_pixels(image_of(rgb32, class_id, rotation=0, scale=2, x=1, y=1, lighting=0))
        turned = object_pixels(image_of(rgb32, class_id, rotation=2, scale=2, x=1, y=1, lighting=0))
        expected = np.rot90(upright)

        def iou(a, b):
            return (a & b).sum() / (a | b).sum()

        assert iou(turned, expected) > 0.9
        assert iou(turned, upright) < 0.8
        assert iou(turned, np.rot90(upright, -1)) < 0.8


def test_scale_and_position_move_and_grow_the_object(rgb32):
    def centroid(img):
        rows, cols = np.nonzero(object_pixels(img))
        return rows.mean(), cols.mean()

    for class_id in range(2):
        areas = [
            object_pixels(image_of(rgb32, class_id, rotation=1, scale=s, x=1, y=1, lighting=0)).sum() for s in range(3)
        ]
        assert areas[0] < areas[1] < areas[2]
        xs = [centroid(image_of(rgb32, class_id, rotation=1, scale=1, x=x, y=1, lighting=0))[1] for x in range(3)]
        ys = [centroid(image_of(rgb32, class_id, rotation=1, scale=1, x=1, y=y, lighting=0))[0] for y in range(3)]
        assert xs[0] < xs[1] < xs[2]
        assert ys[0] < ys[1] < ys[2]


def test_lighting_brightens_the_side_it_comes_from(rgb32):
    for class_id in range(2):
        for rotation in range(8):
            sides = []
            for lighting in range(2):
                img = image_of(rgb32, class_id, rotation=rotation, scale=2, x=1, y=1, lighting=lighting)
                left = img[:, :14].astype(np.float64)[object_pixels(img[:, :14])].mean()
                right = img[:, 18:].astype(np.float64)[object_pixels(img[:, 18:])].mean()
                sides.append(left - right)
            assert sides[0] > sides[1], (class_id, rotation)


def test_edges_are_anti_aliased():
    appearance = synthetic.class_appearances(2, seed=0)[0]
    coverage = synthetic.render_poses(appearance, 16).sum(axis=-1)
    assert coverage.max() <= 1.0 + 1e-6
    assert ((coverage > 0.05) & (coverage < 0.95)).any(axis=(-1, -2)).all()


def test_classes_have_different_colours(rgb16):
    object_colours = []
    for class_id in range(3):
        imgs = rgb16.imgs[class_id * N : (class_id + 1) * N]
        object_colours.append(imgs[object_pixels(imgs)].astype(np.float64).mean(axis=0))
    for a in range(3):
        for b in range(a + 1, 3):
            assert np.abs(object_colours[a] - object_colours[b]).max() > 10


@pytest.mark.parametrize(
    "options, message",
    [
        ({"n_classes": 1}, "at least 2"),
        ({"channels": 2}, "channels"),
        ({"img_size": 4}, "img-size"),
        ({"rotations": 3}, "rotations"),
    ],
)
def test_bad_options_are_user_errors(options, message):
    with pytest.raises(UserError, match=message):
        synthetic.load(**{"img_size": 16, "n_classes": 2, "quiet": True, **options})


def test_fewer_rotations_keep_the_same_images_under_evenly_spaced_turns(rgb16):
    quarter_turns = synthetic.load(img_size=16, n_classes=3, rotations=4, seed=0, quiet=True)
    levels = synthetic.content_factors(quarter_turns.contents)["rotation"]
    assert sorted(set(levels.tolist())) == [0, 2, 4, 6]  # 0, 90, 180 and 270 degrees
    assert len(quarter_turns) == 3 * N // 2
    kept = np.isin(synthetic.content_factors(rgb16.contents)["rotation"], [0, 2, 4, 6])
    assert np.array_equal(quarter_turns.imgs, rgb16.imgs[kept])
    assert np.array_equal(quarter_turns.contents, rgb16.contents[kept])
    assert np.array_equal(quarter_turns.classes, rgb16.classes[kept])
    assert np.array_equal(quarter_turns.extras["masks"], rgb16.extras["masks"][kept])
    upright = synthetic.load(img_size=16, n_classes=3, rotations=1, seed=0, quiet=True)
    assert len(upright) == 3 * N // 8 and not synthetic.content_factors(upright.contents)["rotation"].any()


def test_prints_one_line_unless_quiet(capsys):
    synthetic.load(img_size=8, n_classes=2, quiet=True)
    assert capsys.readouterr().out == ""
    synthetic.load(img_size=8, n_classes=2, quiet=False)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and str(2 * N) in lines[0]


def test_cli_preprocess_writes_a_readable_file(tmp_path):
    result = subprocess.run(
        [sys.executable, "lord.py", "-bd", str(tmp_path), "preprocess", "-di", "synthetic", "-dn", "s",
         "--img-size", "16", "--n-classes", "3"],
        cwd=REPOSITORY, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    dataset = store.load(tmp_path / "cache" / "preprocess" / "s.npz")
    assert dataset.n_classes == 3
    assert len(dataset) == 3 * N
    assert dataset.imgs.shape == (3 * N, 16, 16, 3)
    assert dataset.extras["masks"].shape == (3 * N, 16, 16)
    direct = synthetic.load(img_size=16, n_classes=3, quiet=True)
    assert np.array_equal(dataset.imgs, direct.imgs)
    assert np.array_equal(dataset.contents, direct.contents)


def test_cli_refuses_a_single_class(tmp_path):
    result = subprocess.run(
        [sys.executable, "lord.py", "-bd", str(tmp_path), "preprocess", "-di", "synthetic", "-dn", "s",
         "--img-size", "16", "--n-classes", "1"],
        cwd=REPOSITORY, capture_output=True, text=True, check=False,
    )
    assert result.returncode != 0
    assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "cache" / "preprocess" / "s.npz").exists()
