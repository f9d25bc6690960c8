"""Every subcommand's flags, long and short, parse to the same options; errors are one line."""

import pytest

from conftest import CLI


def parse(*args):
    return vars(CLI.build_parser().parse_args(list(args)))


SAME = [
    (["-bd", "x", "-q", "preprocess", "-di", "folder", "-dp", "p", "-dn", "d"],
     ["--base-dir", "x", "--quiet", "preprocess", "--dataset-id", "folder", "--dataset-path", "p", "--data-name", "d"]),
    (["split-classes", "-idn", "a", "-trdn", "b", "-tsdn", "c", "-ntsi", "3"],
     ["split-classes", "--input-data-name", "a", "--train-data-name", "b", "--test-data-name", "c",
      "--num-test-classes", "3"]),
    (["split-samples", "-idn", "a", "-trdn", "b", "-tsdn", "c", "-ts", "0.2"],
     ["split-samples", "--input-data-name", "a", "--train-data-name", "b", "--test-data-name", "c",
      "--test-split", "0.2"]),
    (["train", "-dn", "d", "-mn", "m", "-cf", "lord-tiny"],
     ["train", "--data-name", "d", "--model-name", "m", "--config", "lord-tiny"]),
    (["train-encoders", "-dn", "d", "-mn", "m"], ["train-encoders", "--data-name", "d", "--model-name", "m"]),
    (["train-synthesis", "-dn", "d", "-mn", "m"], ["train-synthesis", "--data-name", "d", "--model-name", "m"]),
    (["manipulate", "-mn", "m", "-i", "a", "-r", "b", "-o", "c"],
     ["manipulate", "--model-name", "m", "--img-path", "a", "--reference-img-path", "b", "--output-img-path", "c"]),
    (["evaluate", "-mn", "m", "-dn", "d"], ["evaluate", "--model-name", "m", "--data-name", "d"]),
]


@pytest.mark.parametrize("short, long", SAME)
def test_short_and_long_flags_agree(short, long):
    short_options, long_options = parse(*short), parse(*long)
    short_options.pop("run"), long_options.pop("run")
    assert short_options == long_options


def test_global_options_and_defaults():
    options = parse("--device", "cpu", "--seed", "7", "train", "-dn", "d", "-mn", "m", "--set", "a=1", "--set", "b=2",
                    "--overwrite", "--resume", "--checkpoint-minutes", "2.5")
    assert options["device"] == "cpu" and options["seed"] == 7 and options["base_dir"] == "."
    assert options["set"] == ["a=1", "b=2"] and options["overwrite"] and options["resume"]
    assert options["checkpoint_minutes"] == 2.5 and options["config"] == "lord"
    assert parse("demo")["config"] == "lord-tiny"
    assert parse("preprocess", "-di", "synthetic", "-dn", "s", "--img-size", "32", "--n-classes", "5", "--workers",
                 "2", "--skip-bad", "--channels", "1")["n_classes"] == 5
    evaluate = parse("evaluate", "-mn", "m", "-dn", "d")
    assert evaluate["stage"] is None and evaluate["n_pairs"] == 1000 and evaluate["output"] is None
    report = parse("report", "a.json", "b", "--format", "csv", "--columns", "translation", "--columns", "fid")
    assert report["paths"] == ["a.json", "b"] and report["format"] == "csv"
    assert report["columns"] == ["translation", "fid"]


@pytest.mark.parametrize("args", [
    ["train", "-dn", "d"],
    ["train", "-dn", "d", "-mn", "m", "-cf", "nonexistent"],
    ["--device", "tpu", "demo"],
    ["split-samples", "-idn", "a", "-trdn", "b", "-tsdn", "c", "-ts", "abc"],
    ["preprocess", "-di", "folder", "-dn", "x", "--img-size", "-4"],
    ["frobnicate"],
    [],
])
def test_parse_errors_are_one_line(run_cli, args):
    result = run_cli(*args)
    assert result.code == 2
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("error: ")
    assert "Traceback" not in result.err


def test_help_lists_every_subcommand(run_cli):
    result = run_cli("--help")
    assert result.code == 0
    for name in ("preprocess", "split-classes", "split-samples", "train", "train-encoders", "train-synthesis",
                 "manipulate", "evaluate", "report", "demo"):
        assert name in result.out
