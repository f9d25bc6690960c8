"""The base-directory layout, name validation, atomic writes and the model lock.

    <base>/cache/preprocess/<data-name>.npz
    <base>/cache/models/<model-name>/
    <base>/cache/tensorboard/<model-name>/

Every file the toolkit writes goes through `atomic_write`: a temporary file in the same directory,
flushed and fsynced, then renamed over the target, so a kill at any instant leaves either the old or
the new file, never a torn one. Weight files and checkpoints end in a checksum of their contents
(`save_torch`), checked before a value is read (`open_torch_file`).

A model directory is written as a transaction: it is assembled in a staging directory next to it
(`staged_model_dir`) and renamed into place when complete, under the model's lock, which lives
beside the directory (`.<name>.lock`) so that it stays put while directories are swapped.
"""

import contextlib
import ctypes
import errno
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
from pathlib import Path

from lord.errors import Interrupted, UserError

_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
MAX_NAME_LENGTH = 100
# The end of every weight file and checkpoint the toolkit writes: this marker, then the SHA-256 of the bytes before it.
CHECKSUM_MARKER = b"\nLORD-SHA256\n"
CHECKSUM_TRAILER = len(CHECKSUM_MARKER) + hashlib.sha256().digest_size
READ_CHUNK = 1 << 20


def validate_name(name, what="name"):
    """Reject names that could escape the base directory, are awkward in a shell, or too long for a file name."""
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name) or name in (".", ".."):
        raise UserError(
            f"invalid {what} {name!r}: use letters, digits, '.', '_' and '-' only (not '.' or '..')"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise UserError(f"invalid {what} {name[:20]!r}...: {len(name)} characters, at most {MAX_NAME_LENGTH}")
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
            if is_published_model_dir(path):
                raise UserError(self.published_model_message(path, model_name))
            raise UserError(f"no model named {model_name!r} (expected {path / 'config.json'})")
        return path

    def published_model_message(self, published_dir, model_name):
        return (f"{published_dir} is a model directory of the published code (config.pkl, no config.json): "
                f"import it first with: {self.import_command(published_dir, model_name)}")

    def import_command(self, published_dir, model_name):
        """The `import-model` line that makes a model of this base dir from a published model directory."""
        base = "" if str(self.root) == "." else f"-bd {shlex.quote(str(self.root))} "
        return (f"python lord.py {base}import-model -i {shlex.quote(str(published_dir))} "
                f"-mn {shlex.quote(model_name + '-imported')}")


def is_published_model_dir(path):
    """A directory as lord-pytorch's `Lord.save` or OverLORD's `Model.save` leaves it."""
    path = Path(path)
    return (path / "config.pkl").is_file() and any((path / name).is_file() for name in ("latent.pth", "amortized.pth"))


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
    """torch.save through an in-memory buffer, then one atomic write of it and its checksum trailer
    (torch.load reads such a file as it is: the trailer lies after the archive's end)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.write(CHECKSUM_MARKER + hashlib.sha256(buffer.getbuffer()).digest())
    atomic_write_bytes(path, buffer.getbuffer())


def open_regular_file(path, what, max_bytes=None):
    """A binary file object of `path`, only if it is a regular file (a link to one is followed) of at most
    `max_bytes`: a FIFO, a device such as /dev/zero or a directory is refused without reading or blocking."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise UserError(f"missing {what} {path}") from None
    except OSError as error:
        raise UserError(f"cannot read {what} {path}: {_describe_os_error(error)}") from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{what} {path} is not a regular file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise UserError(f"{what} {path} has {info.st_size} bytes, more than the {max_bytes} it can have")
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_bounded(file, max_bytes, path, what):
    """At most `max_bytes` of `file`; a file that grew past them is refused."""
    data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UserError(f"{what} {path} has more than the {max_bytes} bytes it can have")
    return data


def open_torch_file(path, what, max_bytes=None):
    """(binary file object at its start, whether it carries a checksum) of a weight file or checkpoint,
    after its checksum matched. A file of an earlier version of the toolkit, or a published file,
    carries none and is read as it is."""
    file = open_regular_file(path, what, max_bytes)
    try:
        size = os.fstat(file.fileno()).st_size
        if size >= CHECKSUM_TRAILER:
            file.seek(size - CHECKSUM_TRAILER)
            trailer = file.read(CHECKSUM_TRAILER)
            if trailer.startswith(CHECKSUM_MARKER):
                digest = hashlib.sha256()
                file.seek(0)
                remaining = size - CHECKSUM_TRAILER
                while remaining:
                    chunk = file.read(min(READ_CHUNK, remaining))
                    if not chunk:
                        break
                    digest.update(chunk)
                    remaining -= len(chunk)
                if remaining or digest.digest() != trailer[len(CHECKSUM_MARKER):]:
                    raise UserError(f"damaged: {what} {path} does not match its checksum; use the previous "
                                    "checkpoint or --overwrite")
                file.seek(0)
                return file, True
        file.seek(0)
        return file, False
    except OSError as error:
        file.close()
        raise UserError(f"cannot read {what} {path}: {_describe_os_error(error)}") from None
    except BaseException:
        file.close()
        raise


def read_json(path, what="file"):
    try:
        with open(path) as file:
            return json.load(file)
    except FileNotFoundError:
        raise UserError(f"missing {what}: {path}") from None
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {what} {path}: {error}") from None


def model_exists(model_dir):
    """Whether a model directory holds anything: existing work is never replaced without --overwrite."""
    model_dir = Path(model_dir)
    return model_dir.is_symlink() or (model_dir.is_dir() and any(model_dir.iterdir()))


def remove_tensorboard(base, model_name):
    """--overwrite: the replaced model's TensorBoard logs go with it."""
    tensorboard_dir = base.tensorboard_dir(model_name)
    if tensorboard_dir.exists():
        shutil.rmtree(tensorboard_dir)


def _staging_prefix(model_dir, kind):
    return f".{model_dir.name}.{kind}-"


def remove_leftover_staging(model_dir):
    """Called under the model's lock: staging directories of that name are leftovers of a run that died
    (no live process can hold the lock), so they go; an old model a run had moved aside before it died
    is put back where it belongs."""
    model_dir = Path(model_dir)
    if not model_dir.parent.is_dir():
        return
    remove_stale_temporaries(model_dir.parent)
    for entry in sorted(model_dir.parent.iterdir()):
        if entry.name.startswith(_staging_prefix(model_dir, "old")) and entry.is_dir() and not entry.is_symlink():
            if not model_dir.exists():
                os.rename(entry, model_dir)
                print(f"warning: put back {model_dir}, which an interrupted run had moved aside", file=sys.stderr)
            else:
                shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith(_staging_prefix(model_dir, "staging")) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


RENAME_EXCHANGE = 2
AT_FDCWD = -100


def _exchange(first, second):
    """Swap two directories in one step (Linux renameat2); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    result = renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(second))


@contextlib.contextmanager
def sigterm_as_interrupt(message):
    """SIGTERM raises Interrupted (as SIGINT raises KeyboardInterrupt), so that cleanups run; main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise Interrupted(message)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def staged_model_dir(model_dir):
    """Yields a fresh staging directory beside `model_dir`; when the block ends normally its contents become
    `model_dir` in one rename (an existing model is swapped out at that instant and then deleted), and when
    it ends in an error or a signal the staging directory goes and `model_dir` is untouched. The caller
    holds the model's lock and has checked --overwrite."""
    model_dir = Path(model_dir)
    try:
        model_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(model_dir, "staging"), dir=model_dir.parent))
    except OSError as error:
        raise UserError(f"cannot create a directory in {model_dir.parent}: {_describe_os_error(error)}") from None
    try:
        with sigterm_as_interrupt(f"SIGTERM received: {model_dir} was not changed"):
            yield staging
        os.chmod(staging, 0o777 & ~umask())
        _fsync_directory(staging)
        if model_dir.is_symlink() or not model_dir.exists():
            if model_dir.is_symlink():
                model_dir.unlink()
            os.rename(staging, model_dir)
        elif _exchange(staging, model_dir):
            shutil.rmtree(staging, ignore_errors=True)
        else:
            aside = Path(tempfile.mkdtemp(prefix=_staging_prefix(model_dir, "old"), dir=model_dir.parent))
            os.rename(model_dir, aside / "model")
            os.rename(staging, model_dir)
            shutil.rmtree(aside, ignore_errors=True)
        _fsync_directory(model_dir.parent)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"cannot write {model_dir}: {_describe_os_error(error)}; nothing was changed") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def umask():
    """The process's umask (which can only be read by setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temporaries(directory):
    """Remove temporary files that a killed writer left behind in `directory`."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for candidate in directory.glob(".*.tmp-*"):
        pid = candidate.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                candidate.unlink()


def pid_alive(pid):
    """Whether a process of this PID runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_path(model_dir):
    """The lock of a model directory: a file beside it, so that it stays while the directory is replaced."""
    model_dir = Path(model_dir)
    return model_dir.parent / f".{model_dir.name}.lock"

class ModelLock:
    """An exclusive lock on a model name, holding the owner's PID and host.

    A second process writing the same model is refused; a lock left by a dead process on this host
    is taken over with a warning. Under torchrun the lock also holds the job's run id, and a restarted
    worker group of that job (`restart_of` = its run id) takes over its own dead predecessor's lock on
    any host (torchrun starts a group again only once the old one is stopped).
    """

    def __init__(self, model_dir, run_id=None, restart_of=None):
        self.path = lock_path(model_dir)
        self.model_dir = Path(model_dir)
        self.held = False
        self.run_id = run_id or restart_of
        self.restart_of = restart_of

    def acquire(self):
        """Take the lock: the owner's line is written to a file of this process's own, then linked to the
        lock's name (atomic, and failing where a lock exists), so a lock is never seen half written."""
        owner = f"{os.getpid()} {socket.gethostname()} {time.time():.0f}"
        owner += f" {self.run_id}\n" if self.run_id else "\n"
        written = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            written.write_text(owner)
            for _ in range(2):
                try:
                    os.link(written, self.path)
                except FileExistsError:
                    self._take_over_if_stale()
                    continue
                self.held = True
                return self
        except OSError as error:
            raise UserError(f"cannot lock {self.path}: {_describe_os_error(error)}") from None
        finally:
            with contextlib.suppress(OSError):
                written.unlink()
        raise UserError(f"cannot lock {self.path}")

    def _take_over_if_stale(self):
        """Remove the lock of a dead process on this host, or of this torchrun job's previous attempt; refuse
        a live one. The stale file is first moved to a name of this process's own, so that of two processes
        taking over one stale lock, only one removes it (and never the fresh lock the other has made
        meanwhile)."""
        try:
            seen = self.path.read_bytes()
        except FileNotFoundError:
            return
        fields = seen.decode("utf-8", "replace").split()
        pid = int(fields[0]) if fields and fields[0].isdigit() and len(fields[0]) < 10 else None
        host = fields[1] if len(fields) > 1 else None
        own_job = self.restart_of is not None and fields[3:4] == [self.restart_of]
        if own_job or (pid is not None and host == socket.gethostname() and not pid_alive(pid)):
            moved = self.path.with_name(f"{self.path.name}.tmp-stale-{os.getpid()}")
            try:
                os.rename(self.path, moved)
            except FileNotFoundError:
                return
            if moved.read_bytes() != seen:
                with contextlib.suppress(FileExistsError):
                    os.link(moved, self.path)
                moved.unlink()
                raise UserError(f"model directory {self.model_dir} is in use by another process "
                                f"(lock file {self.path})")
            moved.unlink()
            if own_job:
                print(f"warning: taking over the lock {self.path} of process {pid} on {host}, this torchrun "
                      "job's previous attempt", file=sys.stderr)
            else:
                print(f"warning: taking over the stale lock {self.path} of process {pid}, which is gone",
                      file=sys.stderr)
            return
        where = f"process {pid} on {host}" if pid is not None else "another process"
        raise UserError(
            f"model directory {self.model_dir} is in use by {where} (lock file {self.path})"
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
