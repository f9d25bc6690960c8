"""Lose no model: model directories are written as transactions under a lock taken before the existence
check; checkpoints and weight files carry checksums; names are whole, short names.

Processes are stopped at chosen points by a wrapper (below) that runs lord.py with one function
patched to sleep or to SIGKILL itself there: the library has no test hook.
"""

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import original_format as original
from conftest import REPO, set_args
from lord import assets, interop
from lord.assets import BaseDir, lock_path
from lord.model import load_tensors

# Runs lord.py with a stop at STOP_AT: `staging-write` (a file being written into a staging directory) or
# `old-removal` (removing the model a commit swapped out); STOP_ACTION is `kill` (SIGKILL) or `sleep`
# (the first time: say so in STOP_MARKER, then sleep STOP_SECONDS).
STOPPING = """
import os, runpy, shutil, signal, sys, time
point, action = os.environ["STOP_AT"], os.environ["STOP_ACTION"]
stopped = []
def stop():
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if not stopped:
        stopped.append(True)
        open(os.environ["STOP_MARKER"], "w").close()
        time.sleep(float(os.environ.get("STOP_SECONDS", "4")))
real_fsync, real_rmtree = os.fsync, shutil.rmtree
def fsync(descriptor):
    if point == "staging-write" and ".staging-" in os.readlink(f"/proc/self/fd/{descriptor}"):
        stop()
    real_fsync(descriptor)
def rmtree(path, *args, **kwargs):
    if point == "old-removal" and ".staging-" in str(path) and os.path.exists(os.path.join(path, "config.json")):
        stop()
    real_rmtree(path, *args, **kwargs)
os.fsync, shutil.rmtree = fsync, rmtree
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """Two lord-pytorch directories (stage 1 only) that differ in every weight."""
    root = tmp_path_factory.mktemp("transaction-originals")
    config = original.lord_pytorch_config()
    for name, seed in (("a", 21), ("b", 22)):
        original.write_original_dir(root / name, config, original.lord_pytorch_states(config, seed)[0])
    return root


def start_import(base, source, name, *extra, stop_at=None, action="kill", marker=None, limit=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    command = [sys.executable, str(REPO / "lord.py")]
    if stop_at is not None:
        env.update(STOP_AT=stop_at, STOP_ACTION=action, STOP_MARKER=str(marker or "/dev/null"))
        command = [sys.executable, "-c", STOPPING, str(REPO / "lord.py")]

    def file_size_limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.Popen([*command, "-q", "-bd", str(base), "import-model", "-i", str(source), "-mn", name, *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=file_size_limit if limit else None)


def finish(process, timeout=120):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, [line for line in err.splitlines() if line.strip()]


def wait_for(path, process, timeout=60):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)


def snapshot(base):
    """Every entry under the models folder (hidden ones too) with its bytes."""
    models = BaseDir(base).models_dir
    return {str(path.relative_to(models)): path.read_bytes() if path.is_file() else None
            for path in sorted(models.rglob("*"))}


def imported_from(base, name="m"):
    return Path(json.loads((BaseDir(base).model_dir(name) / "config.json").read_text())["imported"]["from"]).name


def assert_model_is(base, originals, source, name="m"):
    """The model is wholly `source`'s: its config and its weights (against an import of it alone)."""
    assert imported_from(base, name) == source
    reference = base.parent / f"reference-{source}"
    if not reference.exists():
        assert interop.import_model(reference, originals / source, "m", _presets(), quiet=True)
    expected = load_tensors(BaseDir(reference).model_dir("m") / "latent.pt")
    actual = load_tensors(BaseDir(base).model_dir(name) / "latent.pt")
    assert set(actual) == set(expected) and all(torch.equal(actual[key], expected[key]) for key in expected)


def _presets():
    import config

    return config.import_presets()


# ------------------------------------------------------------------------------------------ races


def test_while_an_import_holds_the_name_another_import_and_a_train_are_refused(originals, base_with_data, run_cli,
                                                                             tmp_path):
    """Two real processes on one name: this one imports or trains while the other is inside its import."""
    base = base_with_data
    marker = tmp_path / "inside"
    first = start_import(base, originals / "a", "m", stop_at="staging-write", action="sleep", marker=marker)
    wait_for(marker, first)
    result = run_cli("-bd", base, "import-model", "-i", originals / "b", "-mn", "m")
    assert result.code == 1 and len(result.err_lines) == 1 and "in use by process" in result.err, result
    train = ["-bd", base, "-q", "train", "-dn", "syn", "-mn", "m", "-cf", "lord-tiny", *set_args("train.n_epochs=1")]
    result = run_cli(*train)
    assert result.code == 1 and len(result.err_lines) == 1 and "in use by process" in result.err, result
    assert first.poll() is None, "the import ended before the other commands ran"
    assert finish(first) == (0, [])
    assert_model_is(base, originals, "a")
    before = snapshot(base)
    assert sorted(before) == ["m", "m/config.json", "m/latent.pt"]
    result = run_cli(*train)
    assert result.code == 1 and len(result.err_lines) == 1 and "already exists" in result.err
    assert snapshot(base) == before


def test_two_imports_started_together_leave_one_whole_model(originals, tmp_path):
    base = tmp_path / "base"
    processes = {source: start_import(base, originals / source, "m") for source in ("a", "b")}
    results = {source: finish(process) for source, process in processes.items()}
    winners = [source for source, (code, _) in results.items() if code == 0]
    assert len(winners) == 1, results
    code, lines = results["b" if winners == ["a"] else "a"]
    assert code == 1 and len(lines) == 1 and ("in use by process" in lines[0] or "already exists" in lines[0])
    assert_model_is(base, originals, winners[0])


def test_the_existence_check_is_repeated_under_the_lock(originals, run_cli, tmp_path, monkeypatch):
    """Another process writes the name while this one converts: it is refused, and that model stays."""
    base = tmp_path / "base"
    real_convert = interop.convert

    def convert_while_another_writes(*args):
        converted = real_convert(*args)
        monkeypatch.setattr(interop, "convert", real_convert)
        interop.import_model(base, originals / "b", "m", _presets(), quiet=True)
        return converted

    monkeypatch.setattr(interop, "convert", convert_while_another_writes)
    result = run_cli("-bd", base, "import-model", "-i", originals / "a", "-mn", "m")
    assert result.code == 1 and len(result.err_lines) == 1 and "already exists" in result.err
    assert_model_is(base, originals, "b")


# ----------------------------------------------------------------------- failures and signals


def test_a_failed_overwrite_keeps_the_old_model_byte_identical(originals, run_cli, tmp_path):
    base = tmp_path / "base"
    assert run_cli("-bd", base, "-q", "import-model", "-i", originals / "a", "-mn", "m").code == 0
    before = snapshot(base)
    code, lines = finish(start_import(base, originals / "b", "m", "--overwrite", limit=64 << 10))
    assert code == 1 and len(lines) == 1 and "File too large" in lines[0], lines
    assert snapshot(base) == before


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_during_an_overwrite_keep_the_old_model(originals, run_cli, tmp_path, monkeypatch, signum):
    base = tmp_path / "base"
    assert run_cli("-bd", base, "-q", "import-model", "-i", originals / "a", "-mn", "m").code == 0
    before = snapshot(base)
    real_save = interop.save_torch

    def save_then_signal(path, state):
        real_save(path, state)
        os.kill(os.getpid(), signum)

    monkeypatch.setattr(interop, "save_torch", save_then_signal)
    result = run_cli("-bd", base, "import-model", "-i", originals / "b", "-mn", "m", "--overwrite")
    assert result.code == 130 and len(result.err_lines) == 1, result
    assert ("interrupted" if signum == signal.SIGINT else "SIGTERM received") in result.err
    assert snapshot(base) == before


def test_sigkill_while_staging_keeps_the_old_model_and_the_next_run_cleans_up(originals, run_cli, tmp_path):
    base = tmp_path / "base"
    assert run_cli("-bd", base, "-q", "import-model", "-i", originals / "a", "-mn", "m").code == 0
    before = snapshot(base)
    code, _ = finish(start_import(base, originals / "b", "m", "--overwrite", stop_at="staging-write"))
    assert code == -signal.SIGKILL
    left = snapshot(base)
    assert {key: value for key, value in left.items() if not key.startswith(".")} == before
    assert any(key.startswith(".m.staging-") for key in left) and lock_path(BaseDir(base).model_dir("m")).exists()
    result = run_cli("-bd", base, "-q", "import-model", "-i", originals / "b", "-mn", "m", "--overwrite")
    assert result.code == 0 and "stale lock" in result.err
    assert sorted(snapshot(base)) == ["m", "m/config.json", "m/latent.pt"]
    assert_model_is(base, originals, "b")


def test_sigkill_after_the_swap_leaves_the_new_model_and_the_old_one_is_cleaned_up(originals, run_cli, tmp_path):
    base = tmp_path / "base"
    assert run_cli("-bd", base, "-q", "import-model", "-i", originals / "a", "-mn", "m").code == 0
    code, _ = finish(start_import(base, originals / "b", "m", "--overwrite", stop_at="old-removal"))
    assert code == -signal.SIGKILL
    assert_model_is(base, originals, "b")
    assert any(name.startswith(".m.staging-") for name in snapshot(base))
    result = run_cli("-bd", base, "-q", "import-model", "-i", originals / "a", "-mn", "m", "--overwrite")
    assert result.code == 0
    assert sorted(snapshot(base)) == ["m", "m/config.json", "m/latent.pt"]
    assert_model_is(base, originals, "a")


def test_without_an_atomic_swap_a_model_moved_aside_is_put_back(originals, run_cli, tmp_path, monkeypatch):
    base = tmp_path / "base"
    assert run_cli("-bd", base, "-q", "import-model", "-i", originals / "a", "-mn", "m").code == 0
    before = snapshot(base)
    monkeypatch.setattr(assets, "_exchange", lambda first, second: False)
    real_rename = os.rename

    def die_between_the_renames(source, target):
        real_rename(source, target)
        if str(target).endswith("/model"):
            raise KeyboardInterrupt

    monkeypatch.setattr(assets.os, "rename", die_between_the_renames)
    assert run_cli("-bd", base, "-q", "import-model", "-i", originals / "b", "-mn", "m", "--overwrite").code == 130
    assert not BaseDir(base).model_dir("m").exists()
    monkeypatch.setattr(assets.os, "rename", real_rename)
    moved = next(path for path in BaseDir(base).models_dir.iterdir() if path.name.startswith(".m.old-"))
    real_rename(moved / "model", BaseDir(base).models_dir / ".m.old-x")
    moved.rmdir()
    result = run_cli("-bd", base, "-q", "import-model", "-i", originals / "b", "-mn", "n")
    assert result.code == 0 and not BaseDir(base).model_dir("m").exists()
    result = run_cli("-bd", base, "import-model", "-i", originals / "b", "-mn", "m")
    assert result.code == 1 and "already exists" in result.err and "put back" in result.err
    assert {key: value for key, value in snapshot(base).items() if key.startswith("m")} == before
    result = run_cli("-bd", base, "-q", "import-model", "-i", originals / "b", "-mn", "m", "--overwrite")
    assert result.code == 0
    assert_model_is(base, originals, "b")
