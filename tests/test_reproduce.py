"""The reproduction scripts: their usage errors, and every lord.py command line they run, checked by the
real argument parser and configuration (a stand-in interpreter records the commands instead of running
them)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO

SCRIPTS = {
    "lord_content_transfer.sh": ["CARS3D_DIR", "SMALLNORB_DIR", "SHAPES3D_DIR"],
    "lord_leakage.sh": ["CARS3D_DIR", "SMALLNORB_DIR", "KTH_DIR", "RAFD_DIR", "CELEBA_DIR"],
    "overlord_ffhq_age.sh": ["FFHQ_DIR"],
    "overlord_celeba_identity.sh": ["CELEBA_DIR"],
    "overlord_afhq.sh": ["AFHQ_DIR"],
    "overlord_celebahq.sh": ["CELEBAHQ_DIR"],
    "synthetic.sh": [],
}

RECORDER = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {repo!r})
    import importlib.util
    spec = importlib.util.spec_from_file_location("lord_cli", sys.argv[1])
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    args = cli.build_parser().parse_args(sys.argv[2:])
    if getattr(args, "set", None) or getattr(args, "config", None):
        import config
        from lord.configuration import apply_overrides
        apply_overrides(config.get_config(args.config), args.set or [])
    with open(os.environ["RECORD"], "a") as log:
        log.write(json.dumps(sys.argv[2:]) + "\\n")
""")


def run_script(name, args, tmp_path, extra_env=None):
    recorder = tmp_path / "recorder.py"
    recorder.write_text(RECORDER.format(repo=str(REPO)))
    interpreter = tmp_path / "python"
    interpreter.write_text(f"#!/bin/sh\nexec {sys.executable} {recorder} \"$@\"\n")
    interpreter.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if not key.endswith("_DIR")}
    env.update(PYTHON=str(interpreter), RECORD=str(tmp_path / "record.jsonl"), BASE_DIR=str(tmp_path / "runs"),
               SEEDS="0 1")
    env.update(extra_env or {})
    result = subprocess.run(["bash", str(REPO / "reproduce" / name), *args], env=env, capture_output=True,
                            text=True, timeout=120)
    record = tmp_path / "record.jsonl"
    commands = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    return result, commands


def subcommand(command):
    """The subcommand of a recorded lord.py command line (after the global options)."""
    from conftest import CLI

    return CLI.build_parser().parse_args(command).run.__name__.removeprefix("cmd_").replace("_", "-")


def model_of(command):
    return command[command.index("-mn") + 1]


@pytest.mark.parametrize("name", [name for name, dirs in SCRIPTS.items() if dirs])
def test_a_missing_dataset_directory_is_a_usage_error(name, tmp_path):
    result, commands = run_script(name, [], tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: give the ") and "usage:" in result.stderr
    assert commands == []


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_every_command_a_script_runs_is_valid(name, tmp_path):
    directories = []
    for variable in SCRIPTS[name]:
        directories.append(tmp_path / variable.lower())
        directories[-1].mkdir()
    result, commands = run_script(name, [str(path) for path in directories], tmp_path)
    assert result.returncode == 0, result.stderr
    subcommands = [subcommand(command) for command in commands]
    assert "preprocess" in subcommands and "report" == subcommands[-1]
    for stage_command in ("train", "train-encoders", "evaluate"):
        assert stage_command in subcommands
    trained = {model_of(command) for command in commands if subcommand(command) == "train"}
    evaluated = {model_of(command) for command in commands if subcommand(command) == "evaluate"}
    assert trained and trained == evaluated
    assert any(name.endswith("-s1") for name in trained)  # one model per seed of SEEDS
    if name.startswith("overlord"):
        assert "train-synthesis" in subcommands


def test_synthetic_script_trains_the_reference_without_noise_and_decay(tmp_path):
    result, commands = run_script("synthetic.sh", [], tmp_path, {"SEEDS": "0", "EPOCHS": "3"})
    assert result.returncode == 0, result.stderr
    trains = {model_of(command): command for command in commands if subcommand(command) == "train"}
    assert set(trains) == {"syn-lord-s0", "syn-no-regularisation-s0"}
    assert "content_std=0" in trains["syn-no-regularisation-s0"]
    assert "content_std=0" not in trains["syn-lord-s0"]
    assert "train.n_epochs=3" in trains["syn-lord-s0"]
    assert "--over-seeds" in commands[-1] and "--over-seeds" not in commands[-2]


def test_synthetic_script_trains_three_seeds_of_the_preset_on_the_demo_data(tmp_path):
    result, commands = run_script("synthetic.sh", [], tmp_path, {"SEEDS": ""})
    assert result.returncode == 0, result.stderr
    trains = [command for command in commands if subcommand(command) == "train"]
    assert sorted(model_of(command) for command in trains) == [
        f"syn-{variant}-s{seed}" for variant in ("lord", "no-regularisation") for seed in (0, 1, 2)]
    assert not any("train.n_epochs" in argument for command in trains for argument in command)
    preprocess = next(command for command in commands if subcommand(command) == "preprocess")
    assert preprocess[preprocess.index("--rotations") + 1] == "1"
    assert preprocess[preprocess.index("--n-classes") + 1] == "24"
    split = next(command for command in commands if subcommand(command) == "split-samples")
    assert split[split.index("-ts") + 1] == "0.5"


@pytest.mark.parametrize("name", [name for name in SCRIPTS if name.startswith("overlord")])
def test_overlord_tables_show_the_papers_columns_first(name, tmp_path):
    from conftest import CLI
    from lord.evaluation.report import format_table

    directories = []
    for variable in SCRIPTS[name]:
        directories.append(tmp_path / variable.lower())
        directories[-1].mkdir()
    result, commands = run_script(name, [str(path) for path in directories], tmp_path)
    assert result.returncode == 0, result.stderr
    columns = CLI.build_parser().parse_args(commands[-1]).columns
    empty = {"model": "m", "data": "d", "stage": "synthesis", "seed": 0, "version": "1"}
    header = format_table([empty], columns=columns).splitlines()[0]
    shown = [cell.strip() for cell in header.split("|")[1:-1]][3:]
    if name == "overlord_celeba_identity.sh":
        assert shown[:7] == ["face.landmarks", "face.identity", "face.head_pose.yaw", "face.head_pose.pitch",
                             "face.head_pose.roll", "face.n_failed", "fid_paper"]
    else:
        assert shown[:5] == ["fid_paper", "translation.target_class_accuracy", "translation.source_class_accuracy",
                             "translation.classifier_accuracy", "lpips_diversity"]
    assert "fid" in shown and "class_from_content.mlp" in shown


def test_synthetic_script_trains_only_the_variants_asked_for(tmp_path):
    result, commands = run_script("synthetic.sh", [], tmp_path, {"SEEDS": "0 1", "VARIANTS": "no-regularisation"})
    assert result.returncode == 0, result.stderr
    trains = [command for command in commands if subcommand(command) == "train"]
    assert sorted(model_of(command) for command in trains) == ["syn-no-regularisation-s0", "syn-no-regularisation-s1"]
