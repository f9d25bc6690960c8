"""Face alignment as the FFHQ dataset was made, for photos a face model meets.

OverLORD's face models (FFHQ, CelebA-HQ) only see faces cropped and rotated the way FFHQ's own
alignment did it: dlib's frontal face detector finds the face, dlib's 68-point landmark model
its eyes and mouth, and an oriented square computed from them is resampled to the output size.
The landmark model file ships in the PyPI package `face-recognition-models`, so nothing is
downloaded at run time; `--landmarks FILE` takes the official dlib file instead.

The square (`face_quad`) is FFHQ's: x along eye-to-eye minus eye-to-mouth turned by 90 degrees,
as long as the larger of 2x the eye distance and 1.8x the eye-to-mouth distance; y is x turned
by 90 degrees; the centre is 0.1 of the way from the eyes' midpoint to the mouth's. The image is
shrunk by an integer factor while the square is over twice the output size, cropped around the
square, and where the square leaves the photo it is padded by reflection whose border is blurred
and faded towards the median colour (FFHQ's padding, `pad_reflect_blurred`). FFHQ then renders
the square at 4x the output size with bilinear sampling and downsamples with Lanczos; here the
4x rendering is one bilinear affine warp (the square is a rotated square, so the quad transform is
affine) and the downsampling averages each 4x4 block (area), and the shrink step uses area too.
"""

import functools
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lord.errors import UserError

LANDMARK_FILE = "shape_predictor_68_face_landmarks.dat"
INSTALL_HINT = 'pip install -e ".[faces]"'
SUPERSAMPLING = 4
# The detector looks at a copy at most this many pixels on its longer side, upsampled once as
# FFHQ's detection was; the landmarks are found on the full-resolution photo.
DETECTION_SIDE = 800
MIN_SIZE, MAX_SIZE = 16, 4096
# The FFHQ landmark groups (0-based indices into the 68 points).
LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)
MOUTH_LEFT, MOUTH_RIGHT = 48, 54


def import_dlib():
    try:
        return importlib.import_module("dlib")
    except ImportError:
        raise UserError(f"face alignment needs dlib, which is not installed; install it with: {INSTALL_HINT}") from None


def packaged_landmark_model():
    """The 68-point model inside the face-recognition-models package, found without importing it
    (its __init__ needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise UserError(
            f"face alignment needs the landmark model of the package face-recognition-models, which is not "
            f"installed; install it with: {INSTALL_HINT} (or give --landmarks with dlib's {LANDMARK_FILE})"
        )
    path = Path(spec.origin).parent / "models" / LANDMARK_FILE
    if not path.is_file():
        raise UserError(f"the package face-recognition-models has no {LANDMARK_FILE} at {path}; reinstall it")
    return path


@functools.lru_cache(maxsize=2)
def load_models(landmark_path):
    """(face detector, landmark predictor), loaded once per process and model file."""
    dlib = import_dlib()
    try:
        predictor = dlib.shape_predictor(str(landmark_path))
    except RuntimeError as error:
        raise UserError(f"cannot read the landmark model {landmark_path}: {error}") from None
    return dlib.get_frontal_face_detector(), predictor


@dataclass(frozen=True)
class Quad:
    """FFHQ's oriented square in photo coordinates (pixel centres at integers): its corner at the
    output's top left, and the vectors along the output's rows (x_edge) and columns (y_edge)."""

    origin: np.ndarray
    x_edge: np.ndarray
    y_edge: np.ndarray

    @property
    def side(self):
        return float(np.hypot(*self.x_edge))

    @property
    def corners(self):
        """Top left, bottom left, bottom right, top right: FFHQ's order."""
        o, x, y = self.origin, self.x_edge, self.y_edge
        return np.stack([o, o + y, o + x + y, o + x])

    def to_output(self, points, size):
        """Photo coordinates -> output pixel coordinates of a `size` x `size` alignment."""
        relative = np.asarray(points, dtype=np.float64) - self.origin
        a = relative @ self.x_edge / (self.x_edge @ self.x_edge)
        b = relative @ self.y_edge / (self.y_edge @ self.y_edge)
        return np.stack([a, b], axis=-1) * size - 0.5

    def scaled(self, factor, shift=(0.0, 0.0)):
        """The same square after the photo is scaled by `factor` then shifted by `shift`."""
        return Quad(self.origin * factor + np.asarray(shift, dtype=np.float64), self.x_edge * factor,
                    self.y_edge * factor)


def face_quad(landmarks):
    """FFHQ's oriented square from the 68 landmarks, (68, 2) as (x, y)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    eye_left = landmarks[LEFT_EYE].mean(axis=0)
    eye_right = landmarks[RIGHT_EYE].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (landmarks[MOUTH_LEFT] + landmarks[MOUTH_RIGHT]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x = x / np.hypot(*x) * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    centre = eye_avg + eye_to_mouth * 0.1
    return Quad(origin=centre - x - y, x_edge=2 * x, y_edge=2 * y)


def pad_reflect_blurred(image, pad, side):
    """FFHQ's padding: reflect by (left, top, right, bottom), blur the added border (Gaussian of
    0.02 of the square's side) and fade it towards the image's median colour."""
    left, top, right, bottom = (int(p) for p in pad)
    padded = np.pad(image.astype(np.float32), ((top, bottom), (left, right), (0, 0)), mode="reflect")
    height, width = padded.shape[:2]
    ys = np.arange(height, dtype=np.float32)[:, None, None]
    xs = np.arange(width, dtype=np.float32)[None, :, None]
    mask = np.maximum(
        1.0 - np.minimum(xs / max(left, 1), (width - 1 - xs) / max(right, 1)),
        1.0 - np.minimum(ys / max(top, 1), (height - 1 - ys) / max(bottom, 1)),
    )
    sigma = side * 0.02
    radius = int(4.0 * sigma + 0.5)
    blurred = cv2.GaussianBlur(padded, (2 * radius + 1, 2 * radius + 1), sigma, borderType=cv2.BORDER_REFLECT)
    if blurred.ndim == 2:
        blurred = blurred[..., None]
    padded += (blurred - padded) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    padded += (np.median(padded, axis=(0, 1)) - padded) * np.clip(mask, 0.0, 1.0)
    return np.clip(np.rint(padded), 0, 255).astype(np.uint8)


def render_quad(image, quad, size):
    """The square of a uint8 (H, W, 3) photo as a `size` x `size` image: FFHQ's shrink, crop and
    padding, then a 4x supersampled bilinear warp averaged down."""
    side = quad.side
    shrink = int(np.floor(side / size * 0.5))
    if shrink > 1:
        height, width = image.shape[:2]
        new_size = (max(1, int(np.rint(width / shrink))), max(1, int(np.rint(height / shrink))))
        image = cv2.resize(image, new_size, interpolation=cv2.INTER_AREA)
        quad, side = quad.scaled(1.0 / shrink), side / shrink
    border = max(int(np.rint(side * 0.1)), 3)
    corners = quad.corners
    height, width = image.shape[:2]
    crop = (max(int(np.floor(corners[:, 0].min())) - border, 0), max(int(np.floor(corners[:, 1].min())) - border, 0),
            min(int(np.ceil(corners[:, 0].max())) + border, width), min(int(np.ceil(corners[:, 1].max())) + border,
                                                                            height))
    if crop[2] - crop[0] < width or crop[3] - crop[1] < height:
        if crop[2] <= crop[0] or crop[3] <= crop[1]:
            raise ValueError("the face's square lies outside the photo")
        image = image[crop[1] : crop[3], crop[0] : crop[2]]
        quad = quad.scaled(1.0, (-crop[0], -crop[1]))
        corners = quad.corners
    height, width = image.shape[:2]
    pad = (max(-int(np.floor(corners[:, 0].min())) + border, 0), max(-int(np.floor(corners[:, 1].min())) + border, 0),
           max(int(np.ceil(corners[:, 0].max())) - width + border, 0),
           max(int(np.ceil(corners[:, 1].max())) - height + border, 0))
    if max(pad) > border - 4:
        pad = np.maximum(pad, int(np.rint(side * 0.3)))
        image = pad_reflect_blurred(image, pad, side)
        quad = quad.scaled(1.0, (pad[0], pad[1]))
    rendered = SUPERSAMPLING * size
    # output pixel (u, v) of the supersampled image samples the photo at origin + ((u + 0.5) x + (v + 0.5) y) / n
    to_photo = np.column_stack([quad.x_edge / rendered, quad.y_edge / rendered,
                                quad.origin + 0.5 * (quad.x_edge + quad.y_edge) / rendered])
    warped = cv2.warpAffine(np.ascontiguousarray(image), to_photo, (rendered, rendered),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    return cv2.resize(warped, (size, size), interpolation=cv2.INTER_AREA).reshape(size, size, -1)


def check_size(size):
    if not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise UserError(f"the aligned size must lie in {MIN_SIZE}..{MAX_SIZE} pixels, got {size}")
    return int(size)


class FaceAligner:
    """Finds the largest face of a photo and aligns it as FFHQ did.

    Pickles as its landmark file only, so worker processes load the models once each.
    """

    def __init__(self, landmarks=None):
        if landmarks is None:
            path = packaged_landmark_model()
        else:
            path = Path(landmarks)
            if not path.is_file():
                raise UserError(f"no landmark model file {path}")
        self.landmark_path = str(path)
        self.detector, self.predictor = load_models(self.landmark_path)

    def __reduce__(self):
        return FaceAligner, (self.landmark_path,)

    def landmarks(self, image):
        """(68, 2) landmark coordinates (x, y) of the largest face in a uint8 RGB photo, or None."""
        image = np.ascontiguousarray(image)
        height, width = image.shape[:2]
        scale = min(1.0, DETECTION_SIDE / max(height, width))
        small = image if scale == 1.0 else cv2.resize(
            image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
        faces = list(self.detector(small, 1))
        if not faces:
            return None
        face = max(faces, key=lambda rect: rect.width() * rect.height())
        dlib = import_dlib()
        rect = dlib.rectangle(int(round(face.left() / scale)), int(round(face.top() / scale)),
                              int(round(face.right() / scale)), int(round(face.bottom() / scale)))
        shape = self.predictor(image, rect)
        return np.asarray([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)], dtype=np.float64)

    def quad(self, image, name="the image"):
        """FFHQ's square of the largest face; a UserError naming `name` when there is none."""
        landmarks = self.landmarks(image)
        if landmarks is None:
            raise UserError(f"no face found in {name}")
        return face_quad(landmarks)

    def align(self, image, size=256, name="the image", side_by_side=False):
        """The largest face of a uint8 photo (gray or RGB) as a uint8 (size, size, 3) image; with
        `side_by_side`, the photo with the square drawn on it, then the aligned face."""
        image = as_rgb(image)
        quad = self.quad(image, name)
        aligned = render_quad(image, quad, check_size(size))
        return before_and_after(image, quad, aligned) if side_by_side else aligned


def before_and_after(photo, quad, aligned, gap=8):
    """The photo scaled to the aligned image's height with the face's square drawn on it (its top edge
    thicker), a white gap, then the aligned face."""
    size = aligned.shape[0]
    scale = size / photo.shape[0]
    width = max(1, round(photo.shape[1] * scale))
    shown = np.ascontiguousarray(cv2.resize(photo, (width, size), interpolation=cv2.INTER_AREA))
    thickness = max(1, size // 128)
    corners = np.rint(quad.corners * scale).astype(np.int32)
    cv2.polylines(shown, [corners.reshape(-1, 1, 2)], True, (255, 64, 64), thickness, cv2.LINE_AA)
    cv2.line(shown, tuple(map(int, corners[0])), tuple(map(int, corners[3])), (255, 64, 64), 3 * thickness,
             cv2.LINE_AA)
    return np.concatenate([shown, np.full((size, gap, 3), 255, np.uint8), aligned], axis=1)


def as_rgb(image):
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


def aligned_or_none(path, aligner, size, side_by_side=False):
    """The aligned face of an image file, or None when no face is found (the caller lists it)."""
    from lord.data.images import read_image

    image = read_image(path, 3)
    try:
        return aligner.align(image, size, name=str(path), side_by_side=side_by_side)
    except UserError:
        return None


def align_faces(input_path, output_path, size=256, landmarks=None, quiet=False, side_by_side=False):
    """`align-faces`: one photo to one PNG, or every photo of a folder to <folder>/<name>.png.

    In a folder, photos without a face (or unreadable) are skipped and listed at the end; a single
    photo without a face is an error. `side_by_side` writes the photo with the face's square drawn on
    it beside the aligned face. Returns the paths written.
    """
    from tqdm import tqdm

    from lord.data.images import BadImage, directory_images, read_image
    from lord.visualize import save_png

    input_path, output_path = Path(input_path), Path(output_path)
    size = check_size(size)
    if not input_path.exists():
        raise UserError(f"no image file or directory {input_path}")
    if input_path.is_dir():
        if output_path.exists() and not output_path.is_dir():
            raise UserError(f"the input is a directory, so the output must be one too; {output_path} is a file")
        files = directory_images(input_path)
    else:
        if output_path.is_dir():
            output_path = output_path / f"{input_path.stem}.png"
        if output_path.suffix.lower() != ".png":
            raise UserError(f"the output is written as PNG: give a .png path, got {output_path}")
    aligner = FaceAligner(landmarks)
    if not input_path.is_dir():
        try:
            image = read_image(input_path, 3)
        except BadImage as error:
            raise UserError(str(error)) from None
        save_png(output_path, aligner.align(image, size, name=str(input_path), side_by_side=side_by_side))
        if not quiet:
            print(f"wrote {output_path}")
        return [output_path]
    written, skipped = [], []
    for path in tqdm(files, desc="align-faces", unit="img", disable=quiet, dynamic_ncols=True):
        try:
            aligned = aligned_or_none(path, aligner, size, side_by_side)
        except BadImage:
            aligned = None
        if aligned is None:
            skipped.append(path.name)
            continue
        target = output_path / f"{path.stem}.png"
        save_png(target, aligned)
        written.append(target)
    if not written:
        raise UserError(f"no face found in any of the {len(files)} images of {input_path}")
    if not quiet:
        print(f"wrote {len(written)} aligned faces to {output_path}")
    if skipped:
        print(f"skipped {len(skipped)} image(s) without a face or unreadable: {', '.join(skipped)}")
    return written
