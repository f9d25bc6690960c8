"""The paper datasets' preprocessing gives the pixels and labels of the authors' preprocessing.

Each test writes a few textured raw files in the dataset's on-disk layout, runs `lord.py preprocess`,
and runs the calls the published preprocessing makes (avivga/overlord `data.py`, avivga/lord-pytorch
`dataset.py`), restated here, on the same files. Both sides use the same library calls (PIL's bicubic
resize, cv2.resize's default bilinear), so the arrays must be equal, not just close. Class ids the
published code numbers in `set()` order are compared as the same grouping of the images.
"""

import json

import cv2
import numpy as np
import pytest
from PIL import Image

import dataset_fixtures as fx
from lord.data.smallnorb import scan_tree


def preprocess(tmp_path, dataset_id, root, *extra):
    code, out = fx.preprocess(tmp_path / "base", dataset_id, root, "data", *extra)
    assert code == 0
    return fx.load_output(out)


def published_pil_bicubic(path, size):
    """OverLORD: PIL.Image.open(path).resize((size, size), resample=BICUBIC)."""
    with Image.open(path) as image:
        return np.array(image.resize((size, size), resample=Image.BICUBIC))


def read_array(path):
    """imageio.imread, which decodes PNG and JPEG with Pillow."""
    with Image.open(path) as image:
        return np.array(image)


def same_grouping(ours, theirs):
    """Two labelings put the same images together (ids may be numbered differently)."""
    pairs = set(zip(np.asarray(ours).tolist(), np.asarray(theirs).tolist()))
    return len(pairs) == len(set(np.asarray(ours).tolist())) == len(set(np.asarray(theirs).tolist()))


def test_ffhq_as_published(tmp_path):
    root = fx.write_ffhq(tmp_path / "ffhq", ages=(3.0, 29.99999999, 84.5, None, 91.0, 47.2))
    paths = sorted((root / "imgs").glob("*.png"))
    fx.retexture(paths, 1024, 1024)
    data = preprocess(tmp_path, "ffhq", root)
    expected_imgs, expected_age = [], []
    for path in paths:
        faces = json.loads((root / "features" / f"{path.stem}.json").read_text())
        if faces:
            expected_imgs.append(published_pil_bicubic(path, 256))
            # age held in a float32 array, then .astype(np.int16) // 10
            expected_age.append(np.float32(faces[0]["faceAttributes"]["age"]).astype(np.int16) // 10)
    np.testing.assert_array_equal(data.imgs, np.stack(expected_imgs))
    np.testing.assert_array_equal(data.extras["age"], expected_age)
    np.testing.assert_array_equal(data.classes, [0, 3, 8, 9, 4])
    assert data.n_classes == 10 and data.extras["age_names"][9] == "90-99"


def test_celebahq_images_and_hair_masks_as_published(tmp_path):
    root = fx.write_celebahq(tmp_path / "hq", males=(1, -1, -1, 1), hair=(0, 2, 3))
    paths = sorted((root / "imgs").glob("*.jpg"))
    fx.retexture(paths, 1024, 1024)
    mask_dir = root / "CelebAMask-HQ" / "CelebAMask-HQ-mask-anno" / "0"
    for n in (0, 2, 3):
        fx.save_image(mask_dir / f"{n:05d}_hair.png", fx.blob_mask(512, 512, seed=n))
    data = preprocess(tmp_path, "celebahq", root)
    expected_masks = np.zeros((len(paths), 256, 256), np.uint8)
    for n in (0, 2, 3):
        expected_masks[n] = published_pil_bicubic(mask_dir / f"{n:05d}_hair.png", 256)[..., 0] // 255
    np.testing.assert_array_equal(data.imgs, np.stack([published_pil_bicubic(path, 256) for path in paths]))
    np.testing.assert_array_equal(data.extras["masks"], expected_masks)
    np.testing.assert_array_equal(data.extras["gender"], [1, 0, 0, 1])
    # the published threshold keeps only exact 255: fewer mask pixels than the area filter's >= 128
    area = preprocess(tmp_path / "area", "celebahq", root, "--resize", "area")
    assert area.extras["masks"].sum() > data.extras["masks"].sum()


def test_afhq_as_published(tmp_path):
    root = fx.write_afhq(tmp_path / "afhq", per_domain=2, splits=("train",))
    paths = sorted((root / "train").glob("*/*.jpg"))
    fx.retexture(paths, 512, 512)
    data = preprocess(tmp_path, "afhq", root)
    np.testing.assert_array_equal(data.imgs, np.stack([published_pil_bicubic(path, 256) for path in paths]))
    np.testing.assert_array_equal(data.extras["domain"], [0, 0, 1, 1, 2, 2])
    area = preprocess(tmp_path / "area", "afhq", root, "--resize", "area")
    assert np.abs(area.imgs.astype(int) - data.imgs.astype(int)).mean() > 1.0


def test_smallnorb_as_published(tmp_path):
    written = fx.write_smallnorb_tree(tmp_path / "norb", size=96)
    paths = sorted(written)
    fx.retexture(paths, 96, 96, channels=1)
    data = preprocess(tmp_path, "smallnorb", tmp_path / "norb")
    # lord-pytorch: imageio.imread, then cv2.resize(img, dsize=(64, 64)) with its default filter
    expected = {str(path): cv2.resize(read_array(path), dsize=(64, 64)) for path in paths}
    order = scan_tree(tmp_path / "norb")[0]
    np.testing.assert_array_equal(data.imgs[..., 0], np.stack([expected[str(path)] for path in order]))
    assert same_grouping(data.classes, ["_".join(str(v) for v in written[path][0]) for path in order])
    assert same_grouping(data.contents, [written[path][1] for path in order])


def test_celeba_as_published_by_lord(tmp_path):
    directory = fx.write_celeba(tmp_path / "celeba", layout="png", identities=(7, 3, 7))
    paths = sorted(directory.glob("*.png"))
    fx.retexture(paths, 218, 178)
    data = preprocess(tmp_path, "celeba", tmp_path / "celeba")
    expected = []
    for path in paths:
        img = read_array(path)
        crop = img[img.shape[0] // 2 - 64 : img.shape[0] // 2 + 64, img.shape[1] // 2 - 64 : img.shape[1] // 2 + 64]
        expected.append(cv2.resize(crop, dsize=(64, 64)))
    np.testing.assert_array_equal(data.imgs, np.stack(expected))
    assert same_grouping(data.classes, [7, 3, 7])


def test_rafd_as_published(tmp_path):
    dlib = pytest.importorskip("dlib")
    pytest.importorskip("skimage")
    written = fx.write_rafd(tmp_path / "rafd")
    names = sorted(written)
    data = preprocess(tmp_path, "rafd", tmp_path / "rafd")
    detector = dlib.get_frontal_face_detector()
    expected = []
    for name in names:
        img = read_array(tmp_path / "rafd" / name)
        detections, scores, _ = detector.run(img, 0, -1)
        face = detections[int(np.argmax(scores))]
        # lord-pytorch crops 681 rows, RaFD's photo width, around the face; the fixture photos are narrower
        side = img.shape[1]
        top = max((face.bottom() + face.top()) // 2 - side // 2, 0)
        expected.append(cv2.resize(img[top : top + side, :], dsize=(64, 64)))
    np.testing.assert_array_equal(data.imgs, np.stack(expected))
    assert same_grouping(data.classes, [written[name][0] for name in names])
