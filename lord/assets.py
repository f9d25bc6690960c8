"""The base-directory layout, name validation, atomic writes and the model lock.

    <base>/cache/preprocess/<data-name>.npz
    <base>/cache/models/<model-name>/
    <base>/cache/tensorboard/<model-name>/

Every file the toolkit writes goes through `atomic_write`: a temporary file in the same directory,
flushed and fsynced, then renamed over the target, so a kill at any instant leaves either the old or
the new file, never a torn one.
"""

import contextlib
import errno
import io
import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path

from lord.errors import UserError

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]+$")


def validate_name(name, what="name"):
    """Reject names that could escape the base directory or are awkward in a shell."""
    if not isinstance(name, str) or not _NAME_PATTERN.match(name) or name in (".", ".."):
        raise UserError(
            f"invalid {what} {name!r}: use letters, digits, '.', '_' and '-' only (not '.' or '..')"
        )
    return name


class BaseDir:
    """Paths inside a base directory; creates nothing until asked to."""

    def __init__(self, root="."):
        self.root = Path(root)

    @property
    def preprocess_dir(self):
        return self.root / "cache" / "preprocess"

    @property
    def models_dir(self):
        return self.root / "cache" / "models"

    @property
    def tensorboard_root(self):
        return self.root / "cache" / "tensorboard"

    def data_path(self, data_name):
        return self.preprocess_dir / f"{validate_name(data_name, 'data name')}.npz"

    def model_dir(self, model_name):
        return self.models_dir / validate_name(model_name, "model name")

    def tensorboard_dir(self, model_name):
        return self.tensorboard_root / validate_name(model_name, "model name")

    def existing_data_path(self, data_name):
        path = self.data_path(data_name)
        if not path.is_file():
            raise UserError(f"no preprocessed data named {data_name!r} (expected {path})")
        return path

    def existing_model_dir(self, model_name):
        path = self.model_dir(model_name)
        if not (path / "config.json").is_file():
            raise UserError(f"no model named {model_name!r} (expected {path / 'config.json'})")
        return path


def _describe_os_error(error):
    if error.errno == errno.ENOSPC:
        return "no space left on device"
    return error.strerror or str(error)


def atomic_write(path, write):
    """Write `path` atomically; `write(file)` fills a binary file object.

    On failure (a full disk, say) the previous file is left intact and a UserError names the path.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create directory {path.parent}: {_describe_os_error(error)}") from None
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        _fsync_directory(path.parent)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise UserError(f"cannot write {path}: {_describe_os_error(error)}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def _fsync_directory(directory):
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def atomic_write_bytes(path, data):
    atomic_write(path, lambda file: file.write(data))


def atomic_write_json(path, obj):
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def save_torch(path, obj):
    """torch.save through an in-memory buffer, then one atomic write."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


def read_json(path, what="file"):
    try:
        with open(path) as file:
            return json.load(file)
    except FileNotFoundError:
        raise UserError(f"missing {what}: {path}") from None
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {what} {path}: {error}") from None


def clear_model(base, model_name):
    """--overwrite: remove that one model's directory contents (but its lock) and its TensorBoard logs."""
    model_dir = base.model_dir(model_name)
    for entry in model_dir.iterdir():
        if entry.name == "lock":
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    tensorboard_dir = base.tensorboard_dir(model_name)
    if tensorboard_dir.exists():
        shutil.rmtree(tensorboard_dir)


def remove_stale_temporaries(directory):
    """Remove temporary files that a killed writer left behind in `directory`."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for candidate in directory.glob(".*.tmp-*"):
        pid = candidate.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                candidate.unlink()


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ModelLock:
    """An exclusive lock on a model directory, holding the owner's PID and host.

    A second process trying to train the same model is refused; a lock left by a dead process on
    this host is taken over with a warning. Under torchrun the lock also holds the job's run id, and
    a restarted worker group of that job (`restart_of` = its run id) takes over its own dead
    predecessor's lock on any host (torchrun starts a group again only once the old one is stopped).
    """

    def __init__(self, model_dir, run_id=None, restart_of=None):
        self.path = Path(model_dir) / "lock"
        self.held = False
        self.run_id = run_id or restart_of
        self.restart_of = restart_of

    def acquire(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        owner = f"{os.getpid()} {socket.gethostname()} {time.time():.0f}"
        owner += f" {self.run_id}\n" if self.run_id else "\n"
        for _ in range(2):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(descriptor, "w") as file:
                file.write(owner)
            self.held = True
            return self
        raise UserError(f"cannot lock {self.path}")

    def _take_over_if_stale(self):
        try:
            fields = self.path.read_text().split()
        except FileNotFoundError:
            return
        pid = int(fields[0]) if fields and fields[0].isdigit() else None
        host = fields[1] if len(fields) > 1 else None
        if self.restart_of is not None and fields[3:4] == [self.restart_of]:
            print(f"warning: taking over the lock {self.path} of process {pid} on {host}, this torchrun job's "
                  "previous attempt", file=sys.stderr)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        if pid is not None and host == socket.gethostname() and not _pid_alive(pid):
            print(
                f"warning: taking over the stale lock {self.path} of process {pid}, which is gone",
                file=sys.stderr,
            )
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        where = f"process {pid} on {host}" if pid is not None else "another process"
        raise UserError(
            f"model directory {self.path.parent} is in use by {where} (lock file {self.path})"
        )

    def release(self):
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
