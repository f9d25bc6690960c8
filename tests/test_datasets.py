"""Every dataset id and layout, preprocessed through the CLI from fixtures in the real on-disk format."""

import numpy as np
import pytest

import dataset_fixtures as fx


def run(tmp_path, dataset_id, root, *extra, name="data"):
    code, out = fx.preprocess(tmp_path / "base", dataset_id, root, name, *extra)
    assert code == 0, f"preprocess {dataset_id} failed"
    return fx.load_output(out)


def flat_values(imgs, channel=0):
    """The mean of each image's channel, for flat-colour fixtures."""
    return imgs[..., channel].reshape(len(imgs), -1).mean(axis=1)


def assert_flat(imgs, tolerance=0.0):
    spread = imgs.reshape(len(imgs), -1, imgs.shape[-1]).astype(int)
    assert (spread.max(axis=1) - spread.min(axis=1)).max() <= tolerance


# ---- mnist ----

@pytest.mark.parametrize("layout", ["idx", "idx-gz", "npz"])
def test_mnist_layouts(tmp_path, layout):
    root = tmp_path / "mnist"
    if layout == "npz":
        fx.write_mnist_npz(root)
    else:
        fx.write_mnist_idx(root, gz=layout == "idx-gz")
    data = run(tmp_path, "mnist", root)
    _, y_train, _, y_test = fx.mnist_arrays()
    assert data.imgs.shape == (30, 64, 64, 1) and data.imgs.dtype == np.uint8
    assert data.classes.dtype == np.int64 and data.n_classes == 10
    np.testing.assert_array_equal(data.classes, np.concatenate([y_train, y_test]))
    np.testing.assert_array_equal(flat_values(data.imgs), 10 * data.classes + 5)
    np.testing.assert_array_equal(data.contents, 0)
    assert list(data.extras["class_names"]) == [str(d) for d in range(10)]


def test_mnist_truncated_idx_names_the_file(tmp_path, capsys):
    root = fx.write_mnist_idx(tmp_path / "mnist")
    path = root / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    code, out = fx.preprocess(tmp_path / "base", "mnist", root)
    assert code == 1 and not out.exists()
    assert "train-images-idx3-ubyte" in capsys.readouterr().err


# ---- smallnorb ----

def test_smallnorb_jpeg_tree(tmp_path):
    written = fx.write_smallnorb_tree(tmp_path / "norb")
    data = run(tmp_path, "smallnorb", tmp_path / "norb", "--img-size", 32)
    assert data.imgs.shape == (len(written), 32, 32, 1)
    # class = (category, instance, elevation, lighting, side): 2 * 2 * 2 * 1 * 2; content = 3 azimuths
    assert data.n_classes == 16
    np.testing.assert_array_equal(np.bincount(data.classes), 3)
    paths = sorted(written, key=lambda p: (p.parent.parent.name, p.parent.name, p.name))
    keys = [written[p][0] for p in paths]
    azimuths = [written[p][1] for p in paths]
    expected_classes = [sorted(set(keys)).index(k) for k in keys]
    np.testing.assert_array_equal(np.sort(data.classes), np.sort(expected_classes))
    np.testing.assert_array_equal(np.bincount(data.contents), [16, 16, 16])
    # every output row's (class, content) pair names exactly one fixture image, whose grey it carries
    expected_value = {}
    for key, azimuth, path in zip(keys, azimuths, paths):
        category = fx.NORB_FACTORS["categories"].index(key[0])
        instance = fx.NORB_FACTORS["instances"].index(key[1])
        expected_value[(sorted(set(keys)).index(key), sorted(set(azimuths)).index(azimuth))] = fx.norb_value(
            category, instance, key[2], azimuth
        )
    values = flat_values(data.imgs)
    for row in range(len(data.imgs)):
        assert abs(values[row] - expected_value[(data.classes[row], data.contents[row])]) <= 2


def test_smallnorb_official_binary_files(tmp_path):
    rows = fx.write_smallnorb_binary(tmp_path / "norb")
    data = run(tmp_path, "smallnorb", tmp_path / "norb", "--img-size", 16)
    dat = np.concatenate([rows["training"][0], rows["testing"][0]])
    cat = np.concatenate([rows["training"][1], rows["testing"][1]])
    info = np.concatenate([rows["training"][2], rows["testing"][2]])
    assert data.imgs.shape == (2 * len(dat), 16, 16, 1)
    np.testing.assert_array_equal(flat_values(data.imgs), dat[:, :, 0, 0].reshape(-1))
    categories = ("animal", "human", "airplane", "truck", "car")
    keys = [(categories[c], str(i), e, light, side) for c, (i, e, a, light) in zip(cat, info) for side in ("lt", "rt")]
    unique = sorted(set(keys))
    np.testing.assert_array_equal(data.classes, [unique.index(k) for k in keys])
    assert data.n_classes == len(unique) == 2 * 3 * 2 * 2
    np.testing.assert_array_equal(data.contents, np.repeat(info[:, 2] // 2, 2))


def test_smallnorb_partial_binary_set_is_refused(tmp_path, capsys):
    fx.write_smallnorb_binary(tmp_path / "norb", gz_testing=False)
    (tmp_path / "norb" / "smallnorb-5x01235x9x18x6x2x96x96-testing-info.mat").unlink()
    code, out = fx.preprocess(tmp_path / "base", "smallnorb", tmp_path / "norb")
    assert code == 1 and not out.exists()
    assert "testing-info.mat" in capsys.readouterr().err


# ---- cars3d ----

def test_cars3d_npz(tmp_path):
    fx.write_cars3d_npz(tmp_path / "cars", n_cars=3)
    data = run(tmp_path, "cars3d", tmp_path / "cars", "--img-size", 16)
    assert data.imgs.shape == (288, 16, 16, 3) and data.n_classes == 3
    np.testing.assert_array_equal(flat_values(data.imgs, 0), 40 * data.classes + 10)
    np.testing.assert_array_equal(flat_values(data.imgs, 1), data.contents)
    np.testing.assert_array_equal(data.classes[:4], [0, 1, 2, 0])
    np.testing.assert_array_equal(np.bincount(data.contents), np.full(96, 3))


def test_cars3d_official_mat_files(tmp_path):
    pytest.importorskip("scipy.io")
    names = ("car_001_mesh", "car_002_mesh", "car_010_mesh")
    fx.write_cars3d_mat(tmp_path / "cars", names)
    data = run(tmp_path, "cars3d", tmp_path / "cars", "--img-size", 16)
    assert data.imgs.shape == (288, 16, 16, 3) and data.n_classes == 3
    assert list(data.extras["class_names"]) == list(names)
    np.testing.assert_array_equal(flat_values(data.imgs, 0), 40 * data.classes + 10)
    np.testing.assert_array_equal(flat_values(data.imgs, 1), data.contents)
    np.testing.assert_array_equal(np.bincount(data.classes), [96, 96, 96])
    assert sorted(set(data.contents.tolist())) == list(range(96))


# ---- shapes3d ----

def test_shapes3d_uses_label_values_not_file_order(tmp_path):
    pytest.importorskip("h5py")
    labels = fx.write_shapes3d(tmp_path / "shapes")
    data = run(tmp_path, "shapes3d", tmp_path / "shapes")
    assert data.imgs.shape == (len(labels), 64, 64, 3) and data.n_classes == 4
    np.testing.assert_array_equal(data.classes, labels[:, 4].astype(int))
    np.testing.assert_array_equal(flat_values(data.imgs, 0), 60 * data.classes + 10)
    others = [tuple(row) for row in np.delete(labels, 4, axis=1)]
    assert len(set(data.contents.tolist())) == len(set(others)) == 2 * 2 * 1 * 2 * 2
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            assert (data.contents[i] == data.contents[j]) == (others[i] == others[j])


# ---- celeba ----

@pytest.mark.parametrize("layout", ["png", "jpg", "flat"])
def test_celeba_layouts_crop_the_centre(tmp_path, layout):
    identities = (7, 3, 7, 12, 3, 12, 7)
    fx.write_celeba(tmp_path / "celeba", layout, identities)
    data = run(tmp_path, "celeba", tmp_path / "celeba", "--img-size", 32)
    assert data.imgs.shape == (7, 32, 32, 3) and data.n_classes == 3
    expected = [sorted(set(identities)).index(i) for i in identities]
    np.testing.assert_array_equal(data.classes, expected)
    np.testing.assert_array_equal(data.extras["identity"], expected)
    assert list(data.extras["class_names"]) == ["3", "7", "12"]
    # PNG is exact, so not one border pixel may leak in; JPEG blurs colour edges, so look inside them
    tolerance, inner = (0, data.imgs) if layout == "png" else (6, data.imgs[:, 4:-4, 4:-4])
    assert_flat(inner, tolerance)
    for row, identity in enumerate(identities):
        assert np.abs(data.imgs[row, 16, 16].astype(int) - fx.celeba_image(identity)[109, 89]).max() <= tolerance


def test_celeba_n_identities_is_a_reproducible_subset(tmp_path):
    identities = tuple(range(1, 11)) * 2
    fx.write_celeba(tmp_path / "celeba", "png", identities)
    first = run(tmp_path, "celeba", tmp_path / "celeba", "--img-size", 16, "--n-identities", 4, name="a")
    again = run(tmp_path, "celeba", tmp_path / "celeba", "--img-size", 16, "--n-identities", 4, name="b")
    assert first.n_classes == 4 and len(first.imgs) == 8
    np.testing.assert_array_equal(np.bincount(first.classes), [2, 2, 2, 2])
    assert list(first.extras["class_names"]) == list(again.extras["class_names"])
    outputs = tmp_path / "base" / "cache" / "preprocess"
    assert (outputs / "a.npz").read_bytes() == (outputs / "b.npz").read_bytes()


def test_celeba_missing_image_is_named(tmp_path, capsys):
    image_dir = fx.write_celeba(tmp_path / "celeba", "jpg")
    (image_dir / "000002.jpg").unlink()
    code, out = fx.preprocess(tmp_path / "base", "celeba", tmp_path / "celeba")
    assert code == 1 and not out.exists()
    assert "000002.jpg" in capsys.readouterr().err


# ---- kth ----

def test_kth_frames(tmp_path):
    fx.write_kth_frames(tmp_path / "kth")
    data = run(tmp_path, "kth", tmp_path / "kth")
    assert data.imgs.shape == (12, 64, 64, 1) and data.n_classes == 3
    np.testing.assert_array_equal(data.classes, np.repeat([0, 1, 2], 4))
    expected = [fx.kth_gray(p, f) for p in range(3) for f in range(4)]
    np.testing.assert_allclose(flat_values(data.imgs), expected, atol=1)
    assert list(data.extras["class_names"]) == ["person01", "person02", "person03"]


def test_kth_official_videos(tmp_path):
    fx.write_kth_videos(tmp_path / "kth", frames=(5, 3))
    data = run(tmp_path, "kth", tmp_path / "kth", "--img-size", 32, "--workers", 2)
    assert data.imgs.shape == (8, 32, 32, 1) and data.n_classes == 2
    np.testing.assert_array_equal(data.classes, [0, 0, 0, 0, 0, 1, 1, 1])
    expected = [fx.kth_gray(0, f) for f in range(5)] + [fx.kth_gray(1, f) for f in range(3)]
    np.testing.assert_allclose(flat_values(data.imgs), expected, atol=4)


def test_kth_other_action(tmp_path, capsys):
    fx.write_kth_videos(tmp_path / "kth")
    data = run(tmp_path, "kth", tmp_path / "kth", "--img-size", 16, "--action", "boxing")
    assert data.imgs.shape == (2, 16, 16, 1)
    np.testing.assert_allclose(flat_values(data.imgs), [250, 10], atol=4)
    code, _ = fx.preprocess(tmp_path / "base", "kth", tmp_path / "kth", "other", "--action", "running")
    assert code == 1
    assert "boxing, handwaving" in capsys.readouterr().err


def test_kth_unknown_condition_lists_the_present_ones(tmp_path, capsys):
    fx.write_kth_videos(tmp_path / "kth")
    code, _ = fx.preprocess(tmp_path / "base", "kth", tmp_path / "kth", "data", "--condition", "d3")
    assert code == 1
    assert "d1, d4" in capsys.readouterr().err


# ---- rafd ----

def test_rafd_finds_the_faces(tmp_path):
    pytest.importorskip("dlib")
    pytest.importorskip("skimage")
    written = fx.write_rafd(tmp_path / "rafd")
    data = run(tmp_path, "rafd", tmp_path / "rafd", "--img-size", 32)
    assert data.imgs.shape == (4, 32, 32, 3)
    names = sorted(written)
    assert list(data.extras["class_names"]) == ["angry", "happy"]
    np.testing.assert_array_equal(data.classes, [["angry", "happy"].index(written[n][0]) for n in names])
    np.testing.assert_array_equal(data.extras["identity"], [written[n][1] - 1 for n in names])
    assert int(data.extras["n_identity"]) == 2
    # a full-width square follows the face up or down the tall portrait, so little of the flat backdrop
    # shows (a centre crop would show a quarter of it)
    backdrop = np.all(np.abs(data.imgs.astype(int) - fx.RAFD_BACKDROP) <= 3, axis=-1).mean(axis=(1, 2))
    assert backdrop.max() < 0.1
    by_name = dict(zip(names, data.imgs))
    original = by_name["Rafd090_01_Caucasian_female_angry_frontal.jpg"].astype(int)
    mirrored = by_name["Rafd090_01_Caucasian_female_happy_frontal.jpg"][:, ::-1].astype(int)
    assert np.abs(original - mirrored).mean() < 12


def test_rafd_faceless_image_stops_or_is_skipped(tmp_path, capsys):
    pytest.importorskip("dlib")
    pytest.importorskip("skimage")
    fx.write_rafd(tmp_path / "rafd", with_faceless=True)
    code, out = fx.preprocess(tmp_path / "base", "rafd", tmp_path / "rafd", "data", "--img-size", 16)
    assert code == 1 and not out.exists()
    assert "no face found" in capsys.readouterr().err
    code, out = fx.preprocess(tmp_path / "base", "rafd", tmp_path / "rafd", "data", "--img-size", 16, "--skip-bad",
                              quiet=False)
    assert code == 0
    assert "Rafd090_03_Caucasian_male_sad_frontal.jpg" in capsys.readouterr().out
    data = fx.load_output(out)
    assert len(data.imgs) == 4 and data.n_classes == 2


# ---- ffhq ----

@pytest.mark.parametrize("official", [False, True])
def test_ffhq_age_buckets_and_left_out_images(tmp_path, capsys, official):
    fx.write_ffhq(tmp_path / "ffhq", official=official)
    code, out = fx.preprocess(tmp_path / "base", "ffhq", tmp_path / "ffhq", "data", "--img-size", 16, quiet=False)
    assert code == 0
    printed = capsys.readouterr().out
    assert "left out 2 of 7 images without an age" in printed
    data = fx.load_output(out)
    assert data.imgs.shape == (5, 16, 16, 3) and data.n_classes == 8
    np.testing.assert_array_equal(data.classes, [0, 2, 3, 7, 4])
    np.testing.assert_array_equal(data.extras["age"], data.classes)
    assert int(data.extras["n_age"]) == 8 and data.extras["age_names"][7] == "70-79"
    np.testing.assert_array_equal(flat_values(data.imgs, 0), [10, 30, 50, 70, 90])


# ---- afhq ----

@pytest.mark.parametrize("split", ["train", "test"])
def test_afhq_domains(tmp_path, split):
    fx.write_afhq(tmp_path / "afhq", per_domain=2)
    extra = [] if split == "train" else ["--split", "test"]
    data = run(tmp_path, "afhq", tmp_path / "afhq", "--img-size", 16, *extra)
    assert data.imgs.shape == (6, 16, 16, 3) and data.n_classes == 3
    assert list(data.extras["domain_names"]) == ["cat", "dog", "wild"]
    np.testing.assert_array_equal(data.extras["domain"], [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(data.classes, data.extras["domain"])
    assert np.all(np.argmax(data.imgs[:, 8, 8], axis=1) == data.classes)


def test_afhq_default_size_is_256(tmp_path):
    fx.write_afhq(tmp_path / "afhq", per_domain=1, splits=("train",))
    data = run(tmp_path, "afhq", tmp_path / "afhq")
    assert data.imgs.shape == (3, 256, 256, 3)


def test_afhq_single_domain_and_empty_domain_are_refused(tmp_path, capsys):
    fx.write_afhq(tmp_path / "one", per_domain=1, splits=("train",))
    for domain in ("dog", "wild"):
        for path in (tmp_path / "one" / "train" / domain).iterdir():
            path.unlink()
    code, out = fx.preprocess(tmp_path / "base", "afhq", tmp_path / "one")
    assert code == 1 and not out.exists()
    assert "dog, wild have no images" in capsys.readouterr().err
    (tmp_path / "one" / "train" / "dog").rmdir()
    (tmp_path / "one" / "train" / "wild").rmdir()
    code, out = fx.preprocess(tmp_path / "base", "afhq", tmp_path / "one")
    assert code == 1 and not out.exists()
    assert "1 class(es)" in capsys.readouterr().err


# ---- celebahq ----

@pytest.mark.parametrize("official, resize, hair_rows", [
    (False, "published", [3, 5, 0, 9, 0]), (True, "published", [3, 5, 0, 9, 0]), (False, "area", [4, 6, 0, 10, 0]),
])
def test_celebahq_gender_and_hair_masks(tmp_path, official, resize, hair_rows):
    males = (1, -1, 1, -1, -1)
    fx.write_celebahq(tmp_path / "hq", males=males, hair=(0, 1, 3), official=official)
    data = run(tmp_path, "celebahq", tmp_path / "hq", "--img-size", 16, "--resize", resize)
    assert data.imgs.shape == (5, 16, 16, 3) and data.n_classes == 2
    np.testing.assert_array_equal(data.classes, [1, 0, 1, 0, 0])
    np.testing.assert_array_equal(data.extras["gender"], data.classes)
    assert list(data.extras["gender_names"]) == ["female", "male"]
    masks = data.extras["masks"]
    assert masks.shape == (5, 16, 16) and masks.dtype == np.uint8 and set(np.unique(masks)) <= {0, 1}
    # the hair mask covers the top (8 + 4n) / 32 of the image; images 2 and 4 have none. As published
    # (bicubic, then only exact 255 counts) the mask's last row falls below 255 and is left out.
    np.testing.assert_array_equal(masks.sum(axis=(1, 2)) // 16, hair_rows)
    np.testing.assert_allclose(flat_values(data.imgs, 0), [200, 100, 200, 100, 100], atol=3)


def test_celebahq_other_part(tmp_path):
    fx.write_celebahq(tmp_path / "hq", hair=(0, 1))
    data = run(tmp_path, "celebahq", tmp_path / "hq", "--img-size", 8, "--part", "skin")
    np.testing.assert_array_equal(data.extras["masks"].sum(axis=(1, 2)), [64, 64, 0, 0, 0])


def test_celebahq_unknown_part(tmp_path, capsys):
    fx.write_celebahq(tmp_path / "hq")
    code, _ = fx.preprocess(tmp_path / "base", "celebahq", tmp_path / "hq", "data", "--part", "tail")
    assert code == 1
    assert "unknown --part 'tail'" in capsys.readouterr().err


# ---- edges2shoes ----

@pytest.mark.parametrize("split", ["train", "val"])
def test_edges2shoes_pairs(tmp_path, split):
    fx.write_edges2shoes(tmp_path / "e2s", n_pairs=3, split=split)
    extra = [] if split == "train" else ["--split", "val"]
    data = run(tmp_path, "edges2shoes", tmp_path / "e2s", *extra)
    assert data.imgs.shape == (6, 64, 64, 3) and data.n_classes == 2
    np.testing.assert_array_equal(data.classes, [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(data.extras["domain"], data.classes)
    np.testing.assert_array_equal(data.extras["pair"], [0, 0, 1, 1, 2, 2])
    assert list(data.extras["domain_names"]) == ["edges", "shoes"]
    # the left half is the white edge map, the right half the photo (JPEG blurs the seam between them)
    edges, shoes = data.imgs[0::2, :, :-4], data.imgs[1::2, :, 4:]
    assert edges.min() > 230
    np.testing.assert_allclose(flat_values(shoes, 0), [20, 40, 60], atol=4)
