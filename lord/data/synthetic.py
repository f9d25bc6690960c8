"""Rendered objects with known class and content factors: a dataset that needs no download.

It plays the role of the papers' object datasets (Cars3D, SmallNorb): a class is one object identity
(an asymmetric silhouette, a main colour with a texture, and a "cap" in a second colour), and every
class is rendered under the same full grid of content factors (rotation, scale, position, lighting),
so a content id names the same pose and lighting in every class and every image has its counterpart
in every other class. `masks` marks the cap, the region OverLORD's localized correlation uses.

Each pose is rasterised exactly at SUPERSAMPLING times the output size (polygons in sub-pixel fixed
point, texture evaluated in object coordinates) and reduced by block averaging, which anti-aliases.
Positions are whole output pixels, so translating is a shift of the rendered pose.
"""

import colorsys
import math
import time
from dataclasses import dataclass
from types import MappingProxyType

import cv2
import numpy as np

from lord.data.store import make_dataset
from lord.errors import UserError

CONTENT_FACTORS = MappingProxyType(
    {
        "rotation": (0, 45, 90, 135, 180, 225, 270, 315),  # degrees, counterclockwise
        "scale": (0.5, 0.62, 0.74),  # radius of the object / half the frame
        "x": (-0.16, 0.0, 0.16),  # centre offset / half the frame, rightwards
        "y": (-0.16, 0.0, 0.16),  # centre offset / half the frame, downwards
        "lighting": ("left", "right"),  # side the light comes from
    }
)
FACTOR_NAMES = tuple(CONTENT_FACTORS)
FACTOR_SIZES = tuple(len(levels) for levels in CONTENT_FACTORS.values())
N_CONTENTS = math.prod(FACTOR_SIZES)

BACKGROUND = (235, 235, 235)
SUPERSAMPLING = 4
MIN_IMG_SIZE = 8

# Brightness across the object: LIGHT_MEAN + LIGHT_SLOPE on the lit side, LIGHT_MEAN - LIGHT_SLOPE on the far side.
LIGHT_MEAN = 0.85
LIGHT_SLOPE = 0.3
PATTERN_SHADE = 0.55
LUMA = (0.299, 0.587, 0.114)
PATTERNS = ("plain", "stripes", "checker", "dots", "rings")


def _circle(cx, cy, radius, n=20):
    angles = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return tuple((cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in angles)


# Silhouettes as (sign, polygon) parts drawn in order: +1 fills, -1 cuts a hole. Object axes: x right, y up.
SHAPES = MappingProxyType(
    {
        "arrow": ((1, ((-1, -0.2), (0.2, -0.2), (0.2, -0.55), (1, 0), (0.2, 0.55), (0.2, 0.2), (-1, 0.2))),),
        "L": ((1, ((-0.5, 1), (-0.1, 1), (-0.1, -0.6), (0.6, -0.6), (0.6, -1), (-0.5, -1))),),
        "T": ((1, ((-0.8, 1), (0.8, 1), (0.8, 0.6), (0.2, 0.6), (0.2, -1), (-0.2, -1), (-0.2, 0.6), (-0.8, 0.6))),),
        "F": (
            (1, ((-0.5, -1), (-0.5, 1), (0.6, 1), (0.6, 0.62), (-0.12, 0.62), (-0.12, 0.2), (0.35, 0.2),
                 (0.35, -0.16), (-0.12, -0.16), (-0.12, -1))),
        ),
        "key": (
            (1, _circle(-0.6, 0.0, 0.4)),
            (1, ((-0.3, -0.12), (1, -0.12), (1, 0.12), (-0.3, 0.12))),
            (1, ((0.5, -0.12), (0.5, -0.45), (0.66, -0.45), (0.66, -0.12))),
            (1, ((0.8, -0.12), (0.8, -0.34), (0.96, -0.34), (0.96, -0.12))),
            (-1, _circle(-0.65, 0.0, 0.16, n=12)),
        ),
        "boot": (
            (1, ((-0.55, 1), (0.05, 1), (0.1, -0.2), (0.55, -0.3), (0.85, -0.45), (1, -0.7), (0.95, -1), (-0.1, -1),
                 (-0.2, -0.82), (-0.42, -0.82), (-0.55, -1))),
        ),
        "flag": (
            (1, ((-0.72, -1), (-0.42, -1), (-0.42, 1), (-0.72, 1))),
            (1, ((-0.45, 1), (0.9, 1), (0.5, 0.6), (0.9, 0.2), (-0.45, 0.2))),
        ),
        "bolt": ((1, ((0.1, 1), (-0.6, -0.05), (-0.05, -0.05), (-0.35, -1), (0.6, 0.2), (0.05, 0.2), (0.45, 1))),),
        "hook": (
            (1, ((0.15, 1), (0.5, 1), (0.5, -0.55), (0.3, -0.9), (-0.1, -1), (-0.45, -0.85), (-0.6, -0.45),
                 (-0.28, -0.4), (-0.2, -0.62), (0.0, -0.68), (0.15, -0.55))),
        ),
        "house": (
            (1, ((-0.8, -1), (0.8, -1), (0.8, 0.2), (0, 1), (-0.35, 0.65), (-0.35, 0.95), (-0.6, 0.95),
                 (-0.6, 0.4), (-0.8, 0.2))),
        ),
        "moon": ((1, _circle(0.0, 0.0, 1.0, n=32)), (-1, _circle(0.45, 0.3, 0.8, n=32))),
        "P": (
            (1, ((-0.5, -1), (-0.5, 1), (0.3, 1), (0.6, 0.8), (0.65, 0.45), (0.4, 0.12), (-0.1, 0.08), (-0.1, -1))),
            (-1, ((-0.1, 0.42), (-0.1, 0.72), (0.18, 0.72), (0.28, 0.57), (0.18, 0.42))),
        ),
        "shard": ((1, ((-1, -0.3), (-0.2, -0.9), (0.7, -0.6), (1, 0.3), (0.1, 0.45), (-0.3, 1))),),
    }
)


@dataclass(frozen=True)
class Appearance:
    """What makes a class: silhouette parts (normalised), paints, texture and the line bounding the cap."""

    parts: tuple
    main: np.ndarray
    second: np.ndarray
    pattern: str
    pattern_angle: float
    pattern_period: float
    pattern_phase: tuple
    cap_normal: tuple
    cap_offset: float


def luminance(rgb):
    return float(np.dot(LUMA, rgb))


def content_factors(content_ids):
    """The level index of every factor for each content id, as {factor name: int64 array}."""
    content_ids = np.asarray(content_ids, dtype=np.int64)
    if content_ids.size and (content_ids.min() < 0 or content_ids.max() >= N_CONTENTS):
        raise ValueError(f"content ids must lie in [0, {N_CONTENTS})")
    indices = np.unravel_index(content_ids, FACTOR_SIZES)
    return {name: index.astype(np.int64) for name, index in zip(FACTOR_NAMES, indices)}


def content_id(rotation, scale, x, y, lighting):
    """The content id of the given factor level indices (the inverse of `content_factors`)."""
    return np.ravel_multi_index((rotation, scale, x, y, lighting), FACTOR_SIZES).astype(np.int64)


def fill_parts(parts, matrix, size):
    """Binary silhouette of `parts` on a size x size canvas; the 2x3 `matrix` maps object points to pixels."""
    canvas = np.zeros((size, size), dtype=np.uint8)
    matrix = np.asarray(matrix, dtype=np.float64)
    fraction_bits = 4
    for sign, polygon in parts:
        points = np.asarray(polygon, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2] - 0.5
        points = np.round(points * (1 << fraction_bits)).astype(np.int32)
        cv2.fillPoly(canvas, [points], 1 if sign > 0 else 0, lineType=cv2.LINE_8, shift=fraction_bits)
    return canvas


def silhouette(parts, size):
    """The silhouette of normalised `parts` at rotation 0 filling a size x size canvas."""
    half = size / 2
    return fill_parts(parts, [[half, 0, half], [0, -half, half]], size)


def normalise(parts):
    """Move the area centroid to the origin and scale so the farthest point lies at radius 1."""
    points = np.concatenate([np.asarray(polygon, dtype=np.float64) for sign, polygon in parts if sign > 0])
    low, high = points.min(axis=0), points.max(axis=0)
    size = 512
    span = (high - low).max()
    scale = (size - 1) / span
    canvas = fill_parts(parts, [[scale, 0, 0.5 - low[0] * scale], [0, scale, 0.5 - low[1] * scale]], size)
    rows, cols = np.nonzero(canvas)
    centroid = low + np.array([cols.mean(), rows.mean()]) / (size - 1) * span
    radius = np.linalg.norm(points - centroid, axis=1).max()
    return tuple(
        (sign, tuple(map(tuple, (np.asarray(polygon, dtype=np.float64) - centroid) / radius)))
        for sign, polygon in parts
    )


def rotational_overlap(parts, size=64):
    """Largest IoU between the silhouette and itself turned by 90, 180 or 270 degrees (1 = symmetric)."""
    mask = silhouette(parts, size).astype(bool)
    return max(
        (mask & np.rot90(mask, k)).sum() / max((mask | np.rot90(mask, k)).sum(), 1) for k in (1, 2, 3)
    )


def random_polygon(rng):
    """An irregular star-shaped polygon, not too thin, that no quarter turn maps onto itself."""
    while True:
        n = int(rng.integers(5, 10))
        angles = (np.arange(n) + rng.uniform(-0.35, 0.35, n)) * 2 * np.pi / n
        radii = rng.uniform(0.35, 1.0, n)
        parts = normalise(((1, tuple(zip(radii * np.cos(angles), radii * np.sin(angles)))),))
        if rotational_overlap(parts) < 0.8 and silhouette(parts, 64).mean() > 0.33:
            return parts


def random_colour(rng, hue, luma_low, luma_high):
    """A saturated colour of the given hue whose luminance lies in [luma_low, luma_high]."""
    while True:
        rgb = np.array(colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(0.5, 0.95), rng.uniform(0.35, 0.86)))
        if rgb.max() * (LIGHT_MEAN + LIGHT_SLOPE) <= 1.0 and luma_low <= luminance(rgb) <= luma_high:
            return rgb.astype(np.float32)


def class_appearances(n_classes, seed):
    """Per class: silhouette, colours, texture and cap line, all drawn from `seed`.

    Class k depends only on (seed, k), so a smaller set is a prefix of a larger one.
    """
    entropy = int(seed) % 2**64
    set_rng = np.random.default_rng((entropy, 0))
    names = list(SHAPES)
    shape_order = set_rng.permutation(len(names))
    pattern_offset = int(set_rng.integers(len(PATTERNS)))
    appearances = []
    for k in range(n_classes):
        rng = np.random.default_rng((entropy, 1, k))
        parts = normalise(SHAPES[names[shape_order[k]]]) if k < len(names) else random_polygon(rng)
        hue = rng.uniform()
        main = random_colour(rng, hue, 0.25, 0.45)
        while True:
            second = random_colour(rng, hue + rng.uniform(0.2, 0.8), 0.05, 0.72)
            if abs(luminance(second) - luminance(main)) >= 0.28:
                break
        cap_angle = rng.uniform(0, 2 * np.pi)
        cap_normal = (math.cos(cap_angle), math.sin(cap_angle))
        rows, cols = np.nonzero(silhouette(parts, 256))
        points = np.stack([(cols + 0.5) / 128 - 1, 1 - (rows + 0.5) / 128], axis=1)
        cap_share = rng.uniform(0.25, 0.4)
        appearances.append(
            Appearance(
                parts=parts,
                main=main,
                second=second,
                pattern=PATTERNS[(pattern_offset + k) % len(PATTERNS)],
                pattern_angle=float(rng.uniform(0, np.pi)),
                pattern_period=float(rng.uniform(0.42, 0.58)),
                pattern_phase=tuple(rng.uniform(0, 1, size=2)),
                cap_normal=cap_normal,
                cap_offset=float(np.quantile(points @ np.asarray(cap_normal), 1 - cap_share)),
            )
        )
    return appearances


def pattern_mask(appearance, u, v):
    """Where the texture takes the shaded colour, in object coordinates (u, v)."""
    kind, angle, period = appearance.pattern, appearance.pattern_angle, appearance.pattern_period
    phase_a, phase_b = appearance.pattern_phase
    a = (u * math.cos(angle) + v * math.sin(angle)) / period + phase_a
    b = (-u * math.sin(angle) + v * math.cos(angle)) / period + phase_b
    if kind == "plain":
        return np.zeros(u.shape, dtype=bool)
    if kind == "stripes":
        return a - np.floor(a) < 0.5
    if kind == "checker":
        return (np.floor(a) + np.floor(b)) % 2 == 0
    if kind == "dots":
        return (a - np.floor(a) - 0.5) ** 2 + (b - np.floor(b) - 0.5) ** 2 < 0.3**2
    if kind == "rings":
        radius = np.hypot(u - (phase_a - 0.5), v - (phase_b - 0.5)) / (0.8 * period)
        return radius - np.floor(radius) < 0.5
    raise ValueError(f"unknown pattern {kind!r}")


def render_poses(appearance, img_size):
    """One class, centred, at every rotation and scale: float32 (rotations, scales, S, S, 3) in [0, 1].

    The channels are the pixel coverage of the three paints: main colour, pattern shade, cap colour.
    """
    hi = img_size * SUPERSAMPLING
    centre = hi / 2
    pixel = np.arange(hi, dtype=np.float32) + 0.5
    dx = (pixel - centre)[None, :]
    dy = (centre - pixel)[:, None]
    normal = appearance.cap_normal
    rotations = CONTENT_FACTORS["rotation"]
    radii = [radius * SUPERSAMPLING for radius in pose_geometry(img_size)[0]]
    out = np.empty((len(rotations), len(radii), img_size, img_size, 3), dtype=np.float32)
    paints = np.empty((hi, hi, 3), dtype=np.float32)
    for r, degrees in enumerate(rotations):
        cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
        for s, radius in enumerate(radii):
            matrix = [[radius * cos, -radius * sin, centre], [-radius * sin, -radius * cos, centre]]
            inside = fill_parts(appearance.parts, matrix, hi).astype(bool)
            u = (cos * dx + sin * dy) / radius
            v = (cos * dy - sin * dx) / radius
            cap = inside & (u * normal[0] + v * normal[1] > appearance.cap_offset)
            body = inside & ~cap
            shaded = body & pattern_mask(appearance, u, v)
            paints[..., 0] = body & ~shaded
            paints[..., 1] = shaded
            paints[..., 2] = cap
            out[r, s] = cv2.resize(paints, (img_size, img_size), interpolation=cv2.INTER_AREA)
    return out


def pose_geometry(img_size):
    """Object radii per scale level and centre offsets per x and y level, in output pixels.

    Offsets are whole pixels (at least one, so positions stay distinct at any size); radii shrink
    below their nominal share of the frame only where needed to keep a one-pixel background border.
    """
    half = img_size / 2

    def offsets(levels):
        return tuple(
            0 if level == 0 else int(math.copysign(max(1, round(abs(level) * half)), level)) for level in levels
        )

    x_shifts, y_shifts = offsets(CONTENT_FACTORS["x"]), offsets(CONTENT_FACTORS["y"])
    largest = max(CONTENT_FACTORS["scale"]) * half
    room = half - 1 - max(map(abs, x_shifts + y_shifts))
    shrink = min(1.0, room / largest)
    radii = tuple(scale * half * shrink for scale in CONTENT_FACTORS["scale"])
    return radii, x_shifts, y_shifts


def shifted(array, dy, dx):
    """`array` (..., H, W, C) moved by (dy, dx) pixels, the uncovered border zero."""
    out = np.zeros_like(array)
    height, width = array.shape[-3:-1]
    out[..., max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0), :] = array[
        ..., max(-dy, 0) : height - max(dy, 0), max(-dx, 0) : width - max(dx, 0), :
    ]
    return out


def render_class(appearance, img_size):
    """Every content of one class: float images (432, S, S, 3) in [0, 1] and cap coverage (432, S, S)."""
    poses = render_poses(appearance, img_size)
    radius_px, x_shifts, y_shifts = pose_geometry(img_size)
    n_rot, n_scale = poses.shape[:2]
    placed = np.empty((n_rot, n_scale, len(x_shifts), len(y_shifts)) + poses.shape[2:], dtype=np.float32)
    for xi, dx in enumerate(x_shifts):
        for yi, dy in enumerate(y_shifts):
            placed[:, :, xi, yi] = shifted(poses, dy, dx)

    # Light factor over image columns per (lighting, scale, x level), from the object's centre and radius.
    columns = np.arange(img_size, dtype=np.float32) + 0.5
    radii = np.array(radius_px, dtype=np.float32)[:, None, None]
    centres = img_size / 2 + np.array(x_shifts, dtype=np.float32)[None, :, None]
    towards_right = np.clip((columns - centres) / radii, -1, 1)
    sides = np.array([-1.0 if side == "left" else 1.0 for side in CONTENT_FACTORS["lighting"]], dtype=np.float32)
    light = LIGHT_MEAN + LIGHT_SLOPE * sides[:, None, None, None] * towards_right[None]
    # Image axes from here: rotation, scale, x, y, lighting, row, column, channel.
    light = light.transpose(1, 2, 0, 3)[None, :, :, None, :, None, :, None]

    palette = np.stack([appearance.main, appearance.main * PATTERN_SHADE, appearance.second])
    colour = (placed @ palette)[..., None, :, :, :] * light
    background = np.asarray(BACKGROUND, dtype=np.float32) / 255
    coverage = placed.sum(axis=-1, keepdims=True)[..., None, :, :, :]
    imgs = colour + background * (1 - coverage)
    cap = np.broadcast_to(placed[..., None, :, :, 2], imgs.shape[:-1])
    return imgs.reshape((N_CONTENTS, img_size, img_size, 3)), cap.reshape((N_CONTENTS, img_size, img_size))


def cap_masks(cap):
    """0/1 masks of the pixels mostly covered by the cap; never empty while the cap covers anything."""
    peak = cap.reshape(len(cap), -1).max(axis=1)[:, None, None]
    return ((cap >= np.minimum(peak, 0.5)) & (cap > 0)).astype(np.uint8)


def rotation_levels(n_rotations):
    """Indices of the rotation levels of a set with `n_rotations` evenly spaced rotations (a divisor
    of the full set's 8: every 45, 90, 180 degrees, or 0 only)."""
    full = len(CONTENT_FACTORS["rotation"])
    if n_rotations < 1 or full % n_rotations:
        divisors = ", ".join(str(d) for d in range(1, full + 1) if full % d == 0)
        raise UserError(f"--rotations must be one of {divisors}, got {n_rotations}")
    return np.arange(0, full, full // n_rotations)


def load(root=None, img_size=64, n_classes=32, channels=3, rotations=8, seed=0, quiet=False, workers=None,
         skip_bad=False, **_):
    """Render the set: n_classes * 432 images (54 per rotation kept), class-major, contents in
    `content_factors` order. Content ids are those of the full set whatever `rotations` keeps, so
    they name the same pose in every variant.

    `root`, `workers` and `skip_bad` are accepted for the common loader interface and unused.
    """
    start = time.perf_counter()
    img_size, n_classes, channels = int(img_size), int(n_classes), int(channels)
    kept_rotations = rotation_levels(int(rotations))
    if n_classes < 2:
        raise UserError(f"--n-classes must be at least 2 for the synthetic dataset, got {n_classes}")
    if img_size < MIN_IMG_SIZE:
        raise UserError(f"--img-size must be at least {MIN_IMG_SIZE}, got {img_size}")
    if channels not in (1, 3):
        raise UserError(f"--channels must be 1 or 3, got {channels}")
    imgs = np.empty((n_classes * N_CONTENTS, img_size, img_size, channels), dtype=np.uint8)
    masks = np.empty((n_classes * N_CONTENTS, img_size, img_size), dtype=np.uint8)
    for k, appearance in enumerate(class_appearances(n_classes, seed)):
        rendered, cap = render_class(appearance, img_size)
        if channels == 1:
            rendered = rendered @ np.array(LUMA, dtype=np.float32)[:, None]
        rows = slice(k * N_CONTENTS, (k + 1) * N_CONTENTS)
        imgs[rows] = np.rint(np.clip(rendered, 0, 1) * 255)
        masks[rows] = cap_masks(cap)
    classes = np.repeat(np.arange(n_classes, dtype=np.int64), N_CONTENTS)
    contents = np.tile(np.arange(N_CONTENTS, dtype=np.int64), n_classes)
    kept = np.isin(content_factors(contents)["rotation"], kept_rotations)
    imgs, masks, classes, contents = imgs[kept], masks[kept], classes[kept], contents[kept]
    dataset = make_dataset(imgs, classes, contents, n_classes=n_classes, masks=masks)
    if not quiet:
        print(
            f"synthetic: {len(imgs)} images of {img_size}x{img_size}x{channels}, {n_classes} classes "
            f"in {time.perf_counter() - start:.1f}s"
        )
    return dataset
