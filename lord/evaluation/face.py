"""The face metrics of the OverLORD paper's CelebA identity table: does the translation G(content of
A, label of B) keep A's pose and expression and take B's identity?

- landmarks: mean squared error, in squared pixels, between the 68 2-D facial landmarks of A and of
  the translation (face-alignment's FAN, the first face found). Lower is better.
- identity: cosine distance between the FaceNet (VGGFace2) embeddings of B and of the translation,
  each on its MTCNN face crop of 128 pixels without margin (facenet-pytorch). Lower is better.
- head_pose: yaw, pitch, roll: mean absolute angle difference in degrees, wrapped into [0, 180],
  between the head poses of A and of the translation (Hopenet, lord.evaluation.hopenet). Lower is better.
- n_failed: the pairs left out of all three because a face (or its landmarks) was not found in A,
  B or the translation.

The detectors see the uint8 images that `evaluate --export` writes, so the authors' script on those
files measures the same pixels. The maintained libraries do what they exist for (an optional extra:
`pip install -e .[face-metrics]`); what no library provides, Hopenet, is defined in the project. A
missing extra leaves the family null, a network whose weights cannot be had leaves its metric null,
each with one warning saying how to provide it.
"""

import inspect
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image

from lord.errors import UserError
from lord.evaluation.distances import warn

EXTRA = "pip install -e .[face-metrics]"
FACE_LABELS = ("identity", "age", "gender")
MTCNN_IMAGE_SIZE = 128
ANGLES = ("yaw", "pitch", "roll")


def is_face_data(dataset):
    """Whether the data's labels are people's: CelebA and RaFD (`identity`), FFHQ (`age`), CelebA-HQ (`gender`)."""
    return any(name in dataset.extras for name in FACE_LABELS)


def landmark_error(first, second):
    """Mean squared difference between two (68, 2) landmark arrays."""
    return float(np.mean(np.square(np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64))))


def cosine_distance(first, second):
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    return float(1.0 - first @ second / (np.linalg.norm(first) * np.linalg.norm(second)))


def angle_error(first, second):
    """|first - second| in degrees, wrapped: 179 and -179 are 2 degrees apart."""
    return np.abs((np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64) + 180.0) % 360.0
                  - 180.0)


@dataclass
class FaceNetworks:
    """The detectors, each uint8 RGB images (N, H, W, 3) -> one result per image; None where unavailable.

    landmarks: a (68, 2) array per image, None where no face is found; embeddings: a vector per
    image, None where no face is found; head_poses: an (N, 3) array of yaw, pitch, roll in degrees.
    """

    landmarks: Optional[Callable] = None
    embeddings: Optional[Callable] = None
    head_poses: Optional[Callable] = None


def one_line(error):
    return " ".join(f"{type(error).__name__}: {error}".split())


def landmark_detector(face_alignment, device):
    """face-alignment's 2-D FAN on its default face detector, without test-time flipping (as the
    OverLORD evaluation runs it)."""
    kind = getattr(face_alignment.LandmarksType, "TWO_D", None) or face_alignment.LandmarksType._2D
    options = {"flip_input": False, "device": str(device)}
    if "compile" in inspect.signature(face_alignment.FaceAlignment).parameters:
        options["compile"] = False
    aligner = face_alignment.FaceAlignment(kind, **options)

    def landmarks(images):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = [aligner.get_landmarks_from_image(image) for image in images]
        return [None if not faces else np.asarray(faces[0], dtype=np.float64)[:, :2] for faces in found]

    return landmarks


def face_embedder(facenet_pytorch, device):
    """MTCNN face crops (128 px, no margin) embedded by FaceNet trained on VGGFace2."""
    detector = facenet_pytorch.MTCNN(image_size=MTCNN_IMAGE_SIZE, margin=0, device=device)
    network = facenet_pytorch.InceptionResnetV1(pretrained="vggface2", device=device).eval()

    @torch.no_grad()
    def embeddings(images):
        crops = detector([Image.fromarray(image) for image in images])
        found = [index for index, crop in enumerate(crops) if crop is not None]
        vectors = [None] * len(images)
        if found:
            embedded = network(torch.stack([crops[index] for index in found]).to(device)).double().cpu().numpy()
            for index, vector in zip(found, embedded):
                vectors[index] = vector
        return vectors

    return embeddings


def library_cache_hint():
    hub = Path(torch.hub.get_dir())
    return (f"both libraries download their weights on first use (face-alignment into {hub / 'checkpoints'}, "
            f"facenet-pytorch into {hub.parent / 'checkpoints'}): run it once where the internet is reachable and "
            "copy those files to the same places here")


def load_face_networks(device):
    """FaceNetworks for `device`, or None when none can be had; a warning line for each part missing."""
    try:
        import face_alignment
        import facenet_pytorch
    except Exception as error:  # not installed, or installed beside a torchvision that does not load
        warn(f"face is left null: it needs the optional packages facenet-pytorch and face-alignment "
             f"({one_line(error)}); install them with: {EXTRA}")
        return None
    from lord.evaluation.hopenet import load_head_pose

    networks = FaceNetworks()
    try:
        networks.landmarks = landmark_detector(face_alignment, device)
    except Exception as error:  # a download that failed, or a broken cache file
        warn(f"face.landmarks is left null: face-alignment could not load its networks ({one_line(error)}); "
             + library_cache_hint())
    try:
        networks.embeddings = face_embedder(facenet_pytorch, device)
    except Exception as error:
        warn(f"face.identity is left null: facenet-pytorch could not load its networks ({one_line(error)}); "
             + library_cache_hint())
    try:
        networks.head_poses = load_head_pose(device=device)
    except UserError as error:
        warn(f"face.head_pose is left null: {error}")
    if networks.landmarks is None and networks.embeddings is None and networks.head_poses is None:
        return None
    return networks


def rgb(images):
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


class FaceMetrics:
    """Scores translated pairs batch by batch: `add_pairs(a, b, contents, styles, translations)` with
    image indices and uint8 (N, H, W, C) images, then `result()`.

    The detectors run once per distinct image A (landmarks, pose) and B (embedding).
    """

    def __init__(self, networks):
        self.networks = networks
        self.content_landmarks, self.content_poses, self.style_embeddings = {}, {}, {}
        self.landmark_errors, self.identity_distances, self.angle_errors = [], [], []
        self.n_failed = 0

    @staticmethod
    def _per_image(cache, indices, images, detect):
        new = {}
        for index, image in zip(indices.tolist(), images):
            if index not in cache and index not in new:
                new[index] = image
        if new:
            cache.update(zip(new, detect(np.stack(list(new.values())))))
        return [cache[index] for index in indices.tolist()]

    def add_pairs(self, source, reference, contents, styles, translations):
        contents, styles, translations = rgb(contents), rgb(styles), rgb(translations)
        count = len(source)
        networks = self.networks
        nothing = [None] * count
        content_landmarks = translation_landmarks = content_poses = translation_poses = nothing
        style_embeddings = translation_embeddings = nothing
        if networks.landmarks is not None:
            content_landmarks = self._per_image(self.content_landmarks, source, contents, networks.landmarks)
            translation_landmarks = networks.landmarks(translations)
        if networks.embeddings is not None:
            style_embeddings = self._per_image(self.style_embeddings, reference, styles, networks.embeddings)
            translation_embeddings = networks.embeddings(translations)
        if networks.head_poses is not None:
            content_poses = self._per_image(self.content_poses, source, contents, networks.head_poses)
            translation_poses = networks.head_poses(translations)
        for pair in range(count):
            missing_landmarks = networks.landmarks is not None and (
                content_landmarks[pair] is None or translation_landmarks[pair] is None)
            missing_embedding = networks.embeddings is not None and (
                style_embeddings[pair] is None or translation_embeddings[pair] is None)
            if missing_landmarks or missing_embedding:
                self.n_failed += 1
                continue
            if networks.landmarks is not None:
                self.landmark_errors.append(landmark_error(content_landmarks[pair], translation_landmarks[pair]))
            if networks.embeddings is not None:
                self.identity_distances.append(cosine_distance(style_embeddings[pair], translation_embeddings[pair]))
            if networks.head_poses is not None:
                self.angle_errors.append(angle_error(content_poses[pair], translation_poses[pair]))

    def result(self):
        """{landmarks, identity, head_pose: {yaw, pitch, roll}, n_failed}; a metric is None where its
        network is unavailable or no pair was scored."""
        def mean(values):
            return float(np.mean(values)) if values else None

        poses = None
        if self.angle_errors:
            poses = dict(zip(ANGLES, (float(value) for value in np.mean(self.angle_errors, axis=0))))
        return {"landmarks": mean(self.landmark_errors), "identity": mean(self.identity_distances),
                "head_pose": poses, "n_failed": self.n_failed}
