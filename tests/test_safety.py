"""Trust no file, lose nothing: pickle payloads, locks, names, full disks, mismatched weights."""

import errno
import os
import pickle
import subprocess
import sys

import pytest
import torch

from conftest import set_args
from lord import assets
from lord.assets import BaseDir, ModelLock, atomic_write_bytes, lock_path, validate_name
from lord.errors import UserError
from lord.model import load_tensors


class Payload:
    """Unpickling this runs a shell command: the classic pickle attack."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def craft_malicious_weights(path, marker):
    with open(path, "wb") as file:
        torch.save({"generator.fc_layers.0.weight": Payload(marker)}, file, pickle_module=pickle)


def test_pickle_payload_in_a_weight_file_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    craft_malicious_weights(tmp_path / "latent.pt", marker)
    with pytest.raises(UserError, match="cannot load weights file"):
        load_tensors(tmp_path / "latent.pt")
    assert not marker.exists()


def test_pickle_payload_in_a_model_directory_does_not_run(base_with_data, run_cli, tmp_path):
    assert run_cli("-bd", base_with_data, "-q", "train", "-dn", "syn", "-mn", "m", "-cf", "lord-tiny",
                   *set_args("train.n_epochs=1")).code == 0
    model_dir = BaseDir(base_with_data).model_dir("m")
    marker = tmp_path / "pwned"
    craft_malicious_weights(model_dir / "latent.pt", marker)
    result = run_cli("-bd", base_with_data, "train-encoders", "-dn", "syn", "-mn", "m")
    assert result.code != 0 and len(result.err_lines) == 1 and "safely" in result.err
    assert not marker.exists()


def test_weights_from_another_config_name_the_mismatch(base_with_data, run_cli):
    assert run_cli("-bd", base_with_data, "-q", "train", "-dn", "syn", "-mn", "m", "-cf", "lord-tiny",
                   *set_args("train.n_epochs=1")).code == 0
    model_dir = BaseDir(base_with_data).model_dir("m")
    config = (model_dir / "config.json").read_text().replace('"content_dim": 8', '"content_dim": 5')
    (model_dir / "config.json").write_text(config)
    result = run_cli("-bd", base_with_data, "train-encoders", "-dn", "syn", "-mn", "m")
    assert result.code != 0 and "content_embedding.weight" in result.err and "shape mismatch" in result.err


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../escape", "", "x y", "a\\b", "~home"])
def test_names_cannot_escape_the_base_dir(name):
    with pytest.raises(UserError, match="invalid"):
        validate_name(name)


def test_bad_model_name_writes_nothing(base_with_data, run_cli):
    before = sorted(p.relative_to(base_with_data) for p in base_with_data.rglob("*"))
    result = run_cli("-bd", base_with_data, "train", "-dn", "syn", "-mn", "../outside", "-cf", "lord-tiny")
    assert result.code != 0 and "invalid model name" in result.err
    assert sorted(p.relative_to(base_with_data) for p in base_with_data.rglob("*")) == before
    assert not (base_with_data.parent / "outside").exists()


def test_second_process_is_refused_by_the_lock(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock_path(tmp_path / "m").write_text(f"{sleeper.pid} {__import__('socket').gethostname()} 0\n")
        with pytest.raises(UserError, match=f"in use by process {sleeper.pid}"):
            ModelLock(tmp_path / "m").acquire()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path(tmp_path / "m").write_text(f"{dead.pid} {__import__('socket').gethostname()} 0\n")
    with ModelLock(tmp_path / "m"):
        assert lock_path(tmp_path / "m").read_text().split()[0] == str(os.getpid())
    assert "stale lock" in capsys.readouterr().err
    assert not lock_path(tmp_path / "m").exists()


def test_training_a_locked_model_is_refused(base_with_data, run_cli):
    assert run_cli("-bd", base_with_data, "-q", "train", "-dn", "syn", "-mn", "m", "-cf", "lord-tiny",
                   *set_args("train.n_epochs=1")).code == 0
    model_dir = BaseDir(base_with_data).model_dir("m")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock_path(model_dir).write_text(f"{sleeper.pid} {__import__('socket').gethostname()} 0\n")
        result = run_cli("-bd", base_with_data, "train-encoders", "-dn", "syn", "-mn", "m")
        assert result.code != 0 and "in use by process" in result.err
        assert not (model_dir / "amortized.pt").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_full_disk_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint-latent.pt"
    atomic_write_bytes(target, b"previous")

    def no_space(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(assets.os, "fsync", no_space)
    with pytest.raises(UserError, match="no space left on device"):
        atomic_write_bytes(target, b"new and larger")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-latent.pt"]
