"""Tiny raw datasets written in their real on-disk formats, and an in-process CLI runner.

Pixel values encode the labels (a flat colour per image), so a test can check that every image
ended up beside its own label after preprocessing.
"""

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPOSITORY = Path(__file__).resolve().parents[1]
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

from lord.data import store  # noqa: E402


def cli_module():
    """lord.py loaded by path: the name `lord` belongs to the package."""
    spec = importlib.util.spec_from_file_location("lord_cli", REPOSITORY / "lord.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLI = cli_module()


def preprocess(base_dir, dataset_id, root, name="data", *extra, quiet=True):
    """Run `lord.py preprocess` in-process; returns (exit code, path of the output)."""
    argv = ["--base-dir", str(base_dir)] + (["-q"] if quiet else [])
    argv += ["preprocess", "-di", dataset_id, "-dn", name]
    if root is not None:
        argv += ["-dp", str(root)]
    code = CLI.main(argv + [str(arg) for arg in extra])
    return code, Path(base_dir) / "cache" / "preprocess" / f"{name}.npz"


def load_output(path):
    return store.load(path)


def flat(height, width, colour, channels=3):
    return np.full((height, width, channels), colour, dtype=np.uint8)


def save_image(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    options = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    Image.fromarray(array).save(path, **options)


# ---- MNIST ----

def idx_bytes(array, dtype_code):
    header = bytes([0, 0, dtype_code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def mnist_arrays(n_train=20, n_test=10):
    """Images whose flat value is 10 * digit + 5, so the digit can be read back from the pixels."""
    labels = np.arange(n_train + n_test) % 10
    imgs = np.broadcast_to((10 * labels + 5).astype(np.uint8)[:, None, None], (len(labels), 28, 28)).copy()
    return imgs[:n_train], labels[:n_train].astype(np.uint8), imgs[n_train:], labels[n_train:].astype(np.uint8)


def write_mnist_idx(root, gz=False):
    x_train, y_train, x_test, y_test = mnist_arrays()
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "train-images-idx3-ubyte": idx_bytes(x_train, 0x08),
        "train-labels-idx1-ubyte": idx_bytes(y_train, 0x08),
        "t10k-images-idx3-ubyte": idx_bytes(x_test, 0x08),
        "t10k-labels-idx1-ubyte": idx_bytes(y_test, 0x08),
    }
    for name, data in files.items():
        if gz:
            (root / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (root / name).write_bytes(data)
    return root


def write_mnist_npz(root):
    x_train, y_train, x_test, y_test = mnist_arrays()
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return root


# ---- smallNORB ----

NORB_FACTORS = {"categories": ("car", "truck"), "instances": ("4", "6"), "elevations": (0, 3), "lightings": (1,),
                "azimuths": (0, 2, 4)}


def norb_value(category, instance, elevation, azimuth):
    return 20 + 60 * category + 30 * instance + 10 * elevation // 3 + 5 * azimuth // 2


def write_smallnorb_tree(root, size=48):
    """ROOT/<category>/<instance>/azimuthA_elevationE_lightingL_<lt|rt>.jpg; returns {path: (key, azimuth)}."""
    written = {}
    for c, category in enumerate(NORB_FACTORS["categories"]):
        for i, instance in enumerate(NORB_FACTORS["instances"]):
            for elevation in NORB_FACTORS["elevations"]:
                for lighting in NORB_FACTORS["lightings"]:
                    for azimuth in NORB_FACTORS["azimuths"]:
                        for side in ("lt", "rt"):
                            name = f"azimuth{azimuth:02d}_elevation{elevation:02d}_lighting{lighting:02d}_{side}.jpg"
                            path = root / category / instance / name
                            save_image(path, flat(size, size, norb_value(c, i, elevation, azimuth), 1))
                            written[path] = ((category, instance, elevation, lighting, side), azimuth)
    (root / "car" / "4" / "notes.txt").write_text("not an image\n")
    return written


def norb_matrix(array, magic):
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    header = np.asarray([magic, array.ndim] + dims, dtype="<i4").tobytes()
    return header + np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()


def write_smallnorb_binary(root, size=24, gz_testing=True):
    """The official training and testing dat/cat/info files; returns the rows each split holds."""
    root.mkdir(parents=True, exist_ok=True)
    prefixes = {"training": "smallnorb-5x46789x9x18x6x2x96x96-training",
                "testing": "smallnorb-5x01235x9x18x6x2x96x96-testing"}
    rows = {}
    for split, instances in (("training", (4, 6)), ("testing", (1,))):
        entries = [(category, instance, elevation, azimuth, lighting)
                   for category in (0, 4) for instance in instances for elevation in (0, 3)
                   for azimuth in (0, 2, 4) for lighting in (1,)]
        dat = np.empty((len(entries), 2, size, size), dtype=np.uint8)
        for n, (category, instance, elevation, azimuth, lighting) in enumerate(entries):
            dat[n, 0] = norb_value(category // 4, instance % 3, elevation, azimuth)
            dat[n, 1] = 255 - dat[n, 0]
        cat = np.asarray([e[0] for e in entries], dtype=np.int32)
        info = np.asarray([(e[1], e[2], e[3], e[4]) for e in entries], dtype=np.int32)
        for kind, data in (("dat", norb_matrix(dat, 0x1E3D4C55)), ("cat", norb_matrix(cat, 0x1E3D4C54)),
                           ("info", norb_matrix(info, 0x1E3D4C54))):
            name = f"{prefixes[split]}-{kind}.mat"
            if split == "testing" and gz_testing:
                (root / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
            else:
                (root / name).write_bytes(data)
        rows[split] = (dat, cat, info)
    return rows


# ---- Cars3D ----

def car_colour(car, view):
    return (40 * car + 10, view, 200)


def write_cars3d_npz(root, n_cars=3, size=16):
    """imgs ordered elevation x azimuth x car, the original code's layout."""
    root.mkdir(parents=True, exist_ok=True)
    imgs = np.empty((4, 24, n_cars, size, size, 3), dtype=np.uint8)
    for elevation in range(4):
        for azimuth in range(24):
            for car in range(n_cars):
                imgs[elevation, azimuth, car] = car_colour(car, elevation * 24 + azimuth)
    np.savez(root / "cars3d.npz", imgs=imgs.reshape((-1, size, size, 3)))
    return root


def write_cars3d_mat(root, names=("car_001_mesh", "car_002_mesh", "car_010_mesh"), size=32):
    """The official per-model files: `im` of shape size x size x 3 x 24 azimuths x 4 elevations."""
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    for car, name in enumerate(names):
        im = np.empty((size, size, 3, 24, 4), dtype=np.uint8)
        for elevation in range(4):
            for azimuth in range(24):
                im[:, :, :, azimuth, elevation] = np.asarray(car_colour(car, elevation * 24 + azimuth), dtype=np.uint8)
        scipy.io.savemat(str(root / f"{name}.mat"), {"im": im})
    return root


# ---- 3D Shapes ----

SHAPES_VALUES = ([0.0, 0.5], [0.1, 0.9], [0.3], [0.75, 1.25], [0.0, 1.0, 2.0, 3.0], [-30.0, 30.0])


def write_shapes3d(root, seed=0):
    """3dshapes.h5 with every factor combination in a shuffled order; red encodes the shape."""
    import h5py

    root.mkdir(parents=True, exist_ok=True)
    grids = np.meshgrid(*SHAPES_VALUES, indexing="ij")
    labels = np.stack([g.reshape(-1) for g in grids], axis=1)
    labels = labels[np.random.default_rng(seed).permutation(len(labels))]
    imgs = np.zeros((len(labels), 64, 64, 3), dtype=np.uint8)
    imgs[..., 0] = (labels[:, 4] * 60 + 10).astype(np.uint8)[:, None, None]
    with h5py.File(root / "3dshapes.h5", "w") as data:
        data.create_dataset("images", data=imgs)
        data.create_dataset("labels", data=labels)
    return labels


# ---- CelebA ----

def celeba_image(identity):
    """178 x 218 with a flat centre 128 x 128 square in the person's colour and a different border."""
    img = flat(218, 178, (250, 250, 250))
    img[45:173, 25:153] = (30 * identity % 256, 100, 255 - 20 * identity)
    return img


def write_celeba(root, layout="jpg", identities=(7, 3, 7, 12, 3, 12, 7)):
    """One of the three image layouts plus Anno/identity_CelebA.txt."""
    directory, extension = {
        "png": ("Img/img_align_celeba_png.7z/img_align_celeba_png", ".png"),
        "jpg": ("Img/img_align_celeba", ".jpg"),
        "flat": ("img_align_celeba", ".jpg"),
    }[layout]
    lines = []
    for n, identity in enumerate(identities, 1):
        save_image(root / directory / f"{n:06d}{extension}", celeba_image(identity))
        lines.append(f"{n:06d}.jpg {identity}")
    (root / "Anno").mkdir(parents=True, exist_ok=True)
    (root / "Anno" / "identity_CelebA.txt").write_text("\n".join(lines) + "\n")
    return root / directory


# ---- KTH ----

def kth_gray(person, frame):
    return 30 + 50 * person + 5 * frame


def write_kth_frames(root, persons=("person01", "person02", "person03"), n_frames=4):
    """ROOT/handwaving/<person>/<condition>/<frame>.png (160 x 120), with a d1 decoy per person."""
    for p, person in enumerate(persons):
        for condition in ("d1", "d4"):
            for frame in range(n_frames if condition == "d4" else 2):
                gray = kth_gray(p, frame) if condition == "d4" else 255
                save_image(root / "handwaving" / person / condition / f"frame{frame + 1}.png", flat(120, 160, gray, 1))
    return root


def write_kth_video(path, grays):
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    assert writer.isOpened()
    for gray in grays:
        writer.write(flat(120, 160, gray))
    writer.release()


def write_kth_videos(root, frames=(5, 3)):
    """The official ROOT/handwaving/personNN_handwaving_dM_uncomp.avi, plus other conditions and actions."""
    for p, n_frames in enumerate(frames):
        write_kth_video(root / "handwaving" / f"person{p + 1:02d}_handwaving_d4_uncomp.avi",
                        [kth_gray(p, f) for f in range(n_frames)])
        write_kth_video(root / "handwaving" / f"person{p + 1:02d}_handwaving_d1_uncomp.avi", [250, 250])
    write_kth_video(root / "boxing" / "person01_boxing_d4_uncomp.avi", [250])
    write_kth_video(root / "boxing" / "person02_boxing_d4_uncomp.avi", [10])
    return root


# ---- RaFD ----

def face_photo():
    """A real photograph with a face dlib finds: the astronaut image that scikit-image ships."""
    import skimage.data

    return skimage.data.astronaut()[20:260, 110:350]


RAFD_BACKDROP = (90, 90, 90)


def portrait(face, top):
    """A 360 x 240 portrait, like RaFD's tall photos: the 240 x 240 face photo `top` rows down on a flat backdrop."""
    img = flat(360, 240, RAFD_BACKDROP)
    img[top : top + 240] = face
    return img


def write_rafd(root, with_faceless=False):
    """Rafd<angle>_<person>_<ethnicity>_<gender>_<expression>_<gaze>.jpg; returns {name: (expression, person)}."""
    face = face_photo()
    written = {}
    variants = [("angry", 1, portrait(face, 0)), ("happy", 1, portrait(face[:, ::-1], 0)),
                ("angry", 2, portrait(face, 120)), ("happy", 2, portrait(face[:, ::-1], 120))]
    for expression, person, img in variants:
        name = f"Rafd090_{person:02d}_Caucasian_female_{expression}_frontal.jpg"
        save_image(root / name, np.ascontiguousarray(img))
        written[name] = (expression, person)
    if with_faceless:
        save_image(root / "Rafd090_03_Caucasian_male_sad_frontal.jpg", flat(240, 240, 128))
    return written


# ---- FFHQ ----

def write_ffhq(root, ages=(4.0, 25.0, 31.5, 77.0, 45.0, None, "missing"), official=False):
    """Images with face-attribute JSON; None writes an empty face list, "missing" no JSON at all."""
    image_dir, feature_dir = ("images1024x1024", "json") if official else ("imgs", "features")
    for n, age in enumerate(ages):
        relative = f"{n // 1000 * 1000:05d}/{n:05d}.png" if official else f"{n:05d}.png"
        save_image(root / image_dir / relative, flat(32, 32, (10 + 20 * n, 50, 90)))
        if age == "missing":
            continue
        faces = [] if age is None else [{"faceId": "x", "faceAttributes": {"age": age, "gender": "female"}}]
        (root / feature_dir).mkdir(parents=True, exist_ok=True)
        (root / feature_dir / f"{n:05d}.json").write_text(json.dumps(faces))
    return root


# ---- AFHQ ----

AFHQ_COLOURS = {"cat": (200, 40, 40), "dog": (40, 200, 40), "wild": (40, 40, 200)}


def write_afhq(root, per_domain=2, splits=("train", "test")):
    for split in splits:
        for domain, colour in AFHQ_COLOURS.items():
            for n in range(per_domain):
                save_image(root / split / domain / f"flickr_{domain}_{n:06d}.jpg", flat(48, 48, colour))
    return root


# ---- CelebA-HQ ----

def write_celebahq(root, males=(1, -1, 1, -1, -1), hair=(0, 1, 3), official=False):
    """Images, the attribute file (Male and one other column) and hair masks for some images."""
    image_dir = root / ("CelebAMask-HQ/CelebA-HQ-img" if official else "imgs")
    for n, male in enumerate(males):
        save_image(image_dir / f"{n}.jpg", flat(64, 64, (100 + 100 * (male == 1), 80, 60)))
    lines = [str(len(males)), "Bald Male"] + [f"{n}.jpg  -1 {male}" for n, male in enumerate(males)]
    (root / "CelebAMask-HQ").mkdir(parents=True, exist_ok=True)
    (root / "CelebAMask-HQ" / "CelebAMask-HQ-attribute-anno.txt").write_text("\n".join(lines) + "\n")
    for n in hair:
        mask = np.zeros((32, 32), dtype=np.uint8)
        mask[: 8 + 4 * n] = 255
        save_image(root / "CelebAMask-HQ" / "CelebAMask-HQ-mask-anno" / str(n // 2000) / f"{n:05d}_hair.png", mask)
        save_image(root / "CelebAMask-HQ" / "CelebAMask-HQ-mask-anno" / str(n // 2000) / f"{n:05d}_skin.png",
                   np.full((32, 32), 255, np.uint8))
    return root


# ---- edges2shoes ----

def write_edges2shoes(root, n_pairs=3, split="train"):
    """pix2pix files: 64 x 128, edge map (white, dark lines) left and a coloured photo right."""
    for n in range(1, n_pairs + 1):
        img = np.concatenate([flat(64, 64, (245, 245, 245)), flat(64, 64, (20 * n, 120, 200))], axis=1)
        save_image(root / split / f"{n}_AB.jpg", img)
    return root


# ---- textured copies, for comparing resampling filters pixel by pixel ----

def textured(height, width, channels=3, seed=0):
    """A deterministic photo-like image: smooth shapes plus fine grain, so resizing filters differ."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), channels), dtype=np.uint8)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).reshape(height, width, channels)
    grain = rng.normal(0.0, 24.0, (height, width, channels))
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def blob_mask(height, width, seed=0):
    """A 0/255 mask of an irregular region, stored as RGB like CelebAMask-HQ's part masks."""
    rng = np.random.default_rng(seed)
    field = cv2.resize(rng.normal(size=(8, 8)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    mask = np.where(field > 0.2, 255, 0).astype(np.uint8)
    return np.repeat(mask[..., None], 3, axis=-1)


def retexture(paths, height, width, channels=3, seed=0):
    """Overwrite image files (as written by the writers above) with textured images of a new size."""
    for offset, path in enumerate(sorted(paths)):
        save_image(path, textured(height, width, channels, seed + offset))
