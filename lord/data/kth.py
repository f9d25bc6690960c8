"""KTH human actions: the frames of one action under one recording condition; class = person.

Reads extracted frames (ROOT/<action>/<person>/<condition>/<frame image>) or the official videos
(ROOT/<action>/personNN_<action>_dM_uncomp.avi, decoded with OpenCV). Frames are centre-cropped to a
square and resized, in gray.
"""

import functools
import re

import cv2
import numpy as np

from lord.data import images
from lord.data.common import image_files, label_ids, layout_error, list_names, natural_key, report, require_classes
from lord.data.store import make_dataset
from lord.errors import UserError

VIDEO_PATTERN = re.compile(r"^(person\d+)_([a-z]+)_(d\d+)_uncomp\.avi$")


def open_video(path):
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise images.BadImage(f"cannot open video {path}")
    return capture


def count_frames(path):
    """The number of frames a video decodes to (counted by decoding, not from the header)."""
    capture = open_video(path)
    try:
        count = 0
        while capture.grab():
            count += 1
    finally:
        capture.release()
    if count == 0:
        raise images.BadImage(f"video {path} has no readable frame")
    return np.int64(count)


def read_video(item, img_size):
    """All frames of one video, gray, square-cropped and resized: (frames, img_size, img_size, 1)."""
    path, n_frames = item
    out = np.empty((n_frames, img_size, img_size, 1), dtype=np.uint8)
    capture = open_video(path)
    try:
        for index in range(n_frames):
            ok, frame = capture.read()
            if not ok:
                raise images.BadImage(f"video {path} ended after {index} of {n_frames} frames")
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            out[index] = images.resize(images.center_crop(gray[..., None]), img_size)
    finally:
        capture.release()
    return out


def scan_frames(action_dir, condition):
    """(frame paths, persons) from <action>/<person>/<condition>/<frame image>."""
    paths, persons = [], []
    for person_dir in sorted((p for p in action_dir.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
        condition_dir = person_dir / condition
        if not condition_dir.is_dir():
            continue
        frames = image_files(condition_dir)
        if not frames:
            raise UserError(f"kth: {condition_dir} holds no frame images")
        paths.extend(frames)
        persons.extend([person_dir.name] * len(frames))
    return paths, persons


def scan_videos(action_dir, action, condition):
    """The videos of `action` under `condition`, and their persons."""
    videos, persons = [], []
    for path in sorted(action_dir.glob("*.avi"), key=lambda p: natural_key(p.name)):
        match = VIDEO_PATTERN.match(path.name)
        if match and match.group(2) == action and match.group(3) == condition:
            videos.append(path)
            persons.append(match.group(1))
    return videos, persons


def conditions_present(action_dir):
    found = {match.group(3) for path in action_dir.glob("*.avi") if (match := VIDEO_PATTERN.match(path.name))}
    found |= {p.name for person in action_dir.iterdir() if person.is_dir() for p in person.iterdir() if p.is_dir()}
    return sorted(found)


def load(root, img_size, action="handwaving", condition="d4", workers=None, skip_bad=False, quiet=False, **_):
    img_size = int(img_size)
    action_dir = root / action
    expected = [
        f"frames ROOT/{action}/<person>/{condition}/<frame image>",
        f"videos ROOT/{action}/personNN_{action}_{condition}_uncomp.avi",
    ]
    if not action_dir.is_dir():
        actions = sorted(p.name for p in root.iterdir() if p.is_dir())
        if actions:
            raise UserError(
                f"kth: {root} has no action {action!r} (it has: {list_names(actions)}); choose one with --action"
            )
        raise layout_error("kth", root, expected)
    paths, persons = scan_frames(action_dir, condition)
    if paths:
        transform = functools.partial(images.square_image, img_size=img_size, channels=1)
        imgs, kept = images.fill_array(
            transform, paths, (img_size, img_size, 1), workers=workers, skip_bad=skip_bad, desc="kth", quiet=quiet
        )
        frame_persons = [person for person, keep in zip(persons, kept) if keep]
    else:
        videos, persons = scan_videos(action_dir, action, condition)
        if not videos:
            present = conditions_present(action_dir)
            if present:
                raise UserError(
                    f"kth: {action_dir} has no {condition!r} recordings (it has: {', '.join(present)}); "
                    "choose one with --condition"
                )
            raise layout_error("kth", root, expected)
        counts, kept = images.fill_array(
            count_frames, videos, (), dtype=np.int64, workers=workers, skip_bad=skip_bad, desc="counting frames",
            quiet=quiet,
        )
        videos = [video for video, keep in zip(videos, kept) if keep]
        persons = [person for person, keep in zip(persons, kept) if keep]
        imgs, kept = images.fill_array(
            functools.partial(read_video, img_size=img_size), list(zip(videos, counts.tolist())),
            (img_size, img_size, 1), workers=workers, skip_bad=skip_bad, desc="kth", quiet=quiet, rows=counts,
        )
        frame_persons = np.repeat(np.asarray(persons), counts)[kept].tolist()
    classes, names = label_ids(frame_persons)
    require_classes(len(names), "kth")
    report(quiet, f"kth: {action} {condition}: {len(imgs)} frames of {len(names)} people")
    return make_dataset(imgs, classes, n_classes=len(names), class_names=np.asarray(names))
