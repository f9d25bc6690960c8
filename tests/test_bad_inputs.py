"""A table of user mistakes across every subcommand.

Each must end with a non-zero exit status, exactly one `error: ...` line on stderr, no traceback, and
no new or changed file in the base directory.
"""

import hashlib
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import CLI, set_args
from lord.assets import BaseDir
from lord.data import store


def snapshot(root):
    return {
        str(path.relative_to(root)): hashlib.sha1(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*")) if path.is_file()
    } | {str(path.relative_to(root)) + "/": "dir" for path in root.rglob("*") if path.is_dir()}


def write_image(path, size=(20, 20)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 120, np.uint8)).save(path)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, synthetic_base):
    """A base dir with data, a trained two-stage LORD model, broken data files; raw folders outside it."""
    root = tmp_path_factory.mktemp("bad-inputs")
    base = root / "base"
    shutil.copytree(synthetic_base, base)
    tiny = set_args("train.n_epochs=1", "train_encoders.n_epochs=1")
    assert CLI.main(["-bd", str(base), "-q", "train", "-dn", "syn", "-mn", "m", "-cf", "lord-tiny", *tiny]) == 0
    assert CLI.main(["-bd", str(base), "-q", "train-encoders", "-dn", "syn", "-mn", "m"]) == 0
    paths = BaseDir(base)
    dataset = store.load(paths.data_path("syn"))
    store.save(paths.data_path("small"), dataset.subset(np.arange(0, len(dataset), 7)))
    store.save(paths.data_path("one-class"), dataset.subset(np.flatnonzero(dataset.classes == 0)))
    paths.data_path("corrupt").write_bytes(b"PK\x03\x04 torn")
    np.savez(paths.data_path("no-classes"), imgs=dataset.imgs[:4], contents=np.zeros(4), n_classes=np.array(3))
    np.savez(paths.data_path("out-of-range"), imgs=dataset.imgs[:4], classes=np.array([0, 1, 2, 9]),
             contents=np.zeros(4, np.int64), n_classes=np.array(3))
    np.savez(paths.data_path("empty"), imgs=np.zeros((0, 16, 16, 3), np.uint8), classes=np.zeros(0, np.int64),
             contents=np.zeros(0, np.int64), n_classes=np.array(3))
    np.savez(paths.data_path("float-images"), imgs=np.zeros((4, 16, 16, 3), np.float32), classes=np.arange(4) % 2,
             contents=np.zeros(4, np.int64), n_classes=np.array(2))
    np.savez(paths.data_path("nan-contents"), imgs=dataset.imgs[:4], classes=np.arange(4) % 2,
             contents=np.full(4, np.nan), n_classes=np.array(2))
    stage1_only = paths.model_dir("stage1-only")
    stage1_only.mkdir(parents=True)
    shutil.copy(paths.model_dir("m") / "config.json", stage1_only / "config.json")

    raw = root / "raw"
    write_image(raw / "good" / "a" / "1.png")
    write_image(raw / "good" / "b" / "2.png")
    write_image(raw / "one-class" / "only" / "1.png")
    (raw / "empty").mkdir(parents=True)
    write_image(raw / "broken" / "a" / "1.png")
    (raw / "broken" / "b").mkdir(parents=True)
    (raw / "broken" / "b" / "2.png").write_bytes(b"not an image at all")
    (raw / "not-a-dir.txt").write_text("x")
    (raw / "notes.txt").write_text("plain text, not an image")
    (raw / "cars3d").mkdir()
    np.savez(raw / "cars3d" / "cars3d.npz", imgs=np.zeros((5, 64, 64, 3), np.uint8))
    write_image(raw / "image.png", (40, 30))
    return base, raw


M = ["-mn", "m"]
CASES = {
    # preprocess
    "missing dataset path": ["preprocess", "-di", "folder", "-dp", "{raw}/nowhere", "-dn", "x"],
    "dataset path is a file": ["preprocess", "-di", "folder", "-dp", "{raw}/not-a-dir.txt", "-dn", "x"],
    "unknown dataset id": ["preprocess", "-di", "imagenet", "-dp", "{raw}/good", "-dn", "x"],
    "path for a generated set": ["preprocess", "-di", "synthetic", "-dp", "{raw}/good", "-dn", "x"],
    "folder without classes": ["preprocess", "-di", "folder", "-dp", "{raw}/empty", "-dn", "x"],
    "folder with one class": ["preprocess", "-di", "folder", "-dp", "{raw}/one-class", "-dn", "x"],
    "corrupt image": ["preprocess", "-di", "folder", "-dp", "{raw}/broken", "-dn", "x", "--workers", "1"],
    "wrong layout": ["preprocess", "-di", "celeba", "-dp", "{raw}/good", "-dn", "x"],
    "mixed sizes in a dataset file": ["preprocess", "-di", "cars3d", "-dp", "{raw}/cars3d", "-dn", "x"],
    "option of another dataset": ["preprocess", "-di", "synthetic", "-dn", "x", "--action", "boxing"],
    "existing output": ["preprocess", "-di", "synthetic", "-dn", "syn", "--img-size", "16"],
    "name escaping the base dir": ["preprocess", "-di", "synthetic", "-dn", "../escape"],
    "one synthetic class": ["preprocess", "-di", "synthetic", "-dn", "x", "--n-classes", "1"],
    "zero image size": ["preprocess", "-di", "synthetic", "-dn", "x", "--img-size", "0"],
    # splits
    "split unknown data": ["split-samples", "-idn", "nothing", "-trdn", "a", "-tsdn", "b", "-ts", "0.2"],
    "too many test classes": ["split-classes", "-idn", "syn", "-trdn", "a", "-tsdn", "b", "-ntsi", "3"],
    "test split 0": ["split-samples", "-idn", "syn", "-trdn", "a", "-tsdn", "b", "-ts", "0"],
    "test split 1": ["split-samples", "-idn", "syn", "-trdn", "a", "-tsdn", "b", "-ts", "1"],
    "test split not a number": ["split-samples", "-idn", "syn", "-trdn", "a", "-tsdn", "b", "-ts", "half"],
    "corrupt data file": ["split-samples", "-idn", "corrupt", "-trdn", "a", "-tsdn", "b", "-ts", "0.2"],
    "missing array": ["split-samples", "-idn", "no-classes", "-trdn", "a", "-tsdn", "b", "-ts", "0.2"],
    "class out of range": ["split-classes", "-idn", "out-of-range", "-trdn", "a", "-tsdn", "b", "-ntsi", "1"],
    "zero images": ["split-samples", "-idn", "empty", "-trdn", "a", "-tsdn", "b", "-ts", "0.5"],
    # train
    "train unknown data": ["train", "-dn", "nothing", "-mn", "x", "-cf", "lord-tiny"],
    "unknown config": ["train", "-dn", "syn", "-mn", "x", "-cf", "lord-huge"],
    "unknown --set key": ["train", "-dn", "syn", "-mn", "x", "-cf", "lord-tiny", "--set", "frobnicate=1"],
    "mistyped --set key": ["train", "-dn", "syn", "-mn", "x", "-cf", "lord-tiny", "--set", "train.n_epoch=3"],
    "--set without a value": ["train", "-dn", "syn", "-mn", "x", "-cf", "lord-tiny", "--set", "train.n_epochs"],
    "zero epochs": ["train", "-dn", "syn", "-mn", "x", "-cf", "lord-tiny", "--set", "train.n_epochs=0"],
    "negative epochs": ["train", "-dn", "syn", "-mn", "x", "-cf", "lord-tiny", "--set", "train.n_epochs=-2"],
    "NaN value": ["train", "-dn", "syn", "-mn", "x", "-cf", "lord-tiny", "--set", "content_std=NaN"],
    "wrong value type": ["train", "-dn", "syn", "-mn", "x", "-cf", "lord-tiny", "--set", "train.batch_size=big"],
    "batch larger than the data": ["train", "-dn", "small", "-mn", "x", "-cf", "lord-tiny",
                                   "--set", "train.batch_size=5000"],
    "one class": ["train", "-dn", "one-class", "-mn", "x", "-cf", "lord-tiny"],
    "float images": ["train", "-dn", "float-images", "-mn", "x", "-cf", "lord-tiny"],
    "NaN in a label array": ["train", "-dn", "nan-contents", "-mn", "x", "-cf", "lord-tiny"],
    "existing model": ["train", "-dn", "syn", *M, "-cf", "lord-tiny"],
    "resume an unknown model": ["train", "-dn", "syn", "-mn", "fresh", "-cf", "lord-tiny", "--resume"],
    "resume without a checkpoint": ["train", "-dn", "syn", "-mn", "stage1-only", "--resume"],
    "--set with --resume": ["train", "-dn", "syn", *M, "--resume", "--set", "train.n_epochs=9"],
    "cuda without a GPU": ["--device", "cuda", "train", "-dn", "syn", "-mn", "x", "-cf", "lord-tiny"],
    "model name escaping": ["train", "-dn", "syn", "-mn", "..", "-cf", "lord-tiny"],
    # later stages
    "unknown model": ["train-encoders", "-dn", "syn", "-mn", "nothing"],
    "train-encoders before train": ["train-encoders", "-dn", "syn", "-mn", "stage1-only"],
    "encoders on other data": ["train-encoders", "-dn", "small", *M, "--overwrite"],
    "stage key of another stage": ["train-encoders", "-dn", "syn", *M, "--overwrite", "--set", "train.n_epochs=2"],
    "existing encoders": ["train-encoders", "-dn", "syn", *M],
    "synthesis for a LORD model": ["train-synthesis", "-dn", "syn", *M],
    # manipulate
    "unreadable image": ["manipulate", *M, "-i", "{raw}/notes.txt", "-o", "{raw}/out.png"],
    "missing image": ["manipulate", *M, "-i", "{raw}/missing.png", "-o", "{raw}/out.png"],
    "manipulate unknown model": ["manipulate", "-mn", "nothing", "-i", "{raw}/image.png", "-o", "{raw}/out.png"],
    "label out of range": ["manipulate", *M, "-i", "{raw}/image.png", "-o", "{raw}/out.png", "--label", "99"],
    "model without encoders": ["manipulate", "-mn", "stage1-only", "-i", "{raw}/image.png", "-o", "{raw}/out.png"],
    # the top level
    "no subcommand": [],
    "unknown subcommand": ["fly"],
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_mistake_ends_in_one_clear_line_and_changes_nothing(prepared, run_cli, name):
    base, raw = prepared
    args = [arg.replace("{raw}", str(raw)) for arg in CASES[name]]
    before = snapshot(base)
    raw_before = snapshot(raw)
    result = run_cli("-bd", base, *args)
    assert result.code not in (0, None), result
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("error: "), result.err
    assert "Traceback" not in result.err
    assert snapshot(base) == before
    assert snapshot(raw) == raw_before


def test_the_table_is_large_enough():
    assert len(CASES) >= 30
