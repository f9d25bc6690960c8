"""The command line as its users type it: --version, help on every flag with examples that parse, --set
keys each stage accepts, global options on either side of the subcommand, one meaning per flag, `info`,
evaluate's refusal to replace a foreign file, and the published code's model directories recognised."""

import argparse
import json
import re
import shlex

import numpy as np
import pytest
from PIL import Image

import config
import lord
import original_format as original
from conftest import CLI, REPO
from lord import serve
from lord.assets import BaseDir, atomic_write_json
from lord.configuration import apply_overrides
from lord.data import store
from lord.data.registry import SPECS
from lord.errors import UserError
from lord.training import override_prefixes

PRESETS = {name: config.get_config(name) for name in config.names()}
MAIN_SUBCOMMANDS = ("preprocess", "split-classes", "split-samples", "train", "train-encoders", "train-synthesis",
                    "manipulate", "align-faces", "import-model", "info", "evaluate", "report", "serve", "demo")
# the fewest arguments each subcommand parses with
REQUIRED = {
    "preprocess": ["-di", "synthetic", "-dn", "s"],
    "split-classes": ["-idn", "a", "-trdn", "b", "-tsdn", "c", "-ntsi", "2"],
    "split-samples": ["-idn", "a", "-trdn", "b", "-tsdn", "c", "-ts", "0.5"],
    "train": ["-dn", "d", "-mn", "m"],
    "train-encoders": ["-dn", "d", "-mn", "m"],
    "train-synthesis": ["-dn", "d", "-mn", "m"],
    "manipulate": ["-mn", "m", "-i", "a.png", "-o", "b.png"],
    "align-faces": ["-i", "photo.jpg", "-o", "aligned.png"],
    "import-model": ["-i", "original", "-mn", "m"],
    "info": ["-mn", "m"],
    "evaluate": ["-mn", "m", "-dn", "d"],
    "report": ["result.json"],
    "serve": [],
    "demo": [],
}
STAGES = {"train": "latent", "train-encoders": "amortized", "train-synthesis": "synthesis"}


def subparsers(parser):
    (action,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return action.choices


def help_text(name):
    return subparsers(CLI.build_parser())[name].format_help()


def example_lines(name):
    text = help_text(name)
    assert "\nexamples:\n" in text, f"{name} --help has no examples"
    return [line.strip() for line in text.split("\nexamples:\n", 1)[1].splitlines() if line.strip()]


def test_version(run_cli):
    result = run_cli("--version")
    assert result.code == 0 and result.out.strip() == f"lord.py {lord.__version__}"


def test_preprocess_help_lists_the_registry_datasets(run_cli):
    result = run_cli("preprocess", "--help")
    assert result.code == 0
    listed = result.out.split("dataset ids (-di):\n", 1)[1]
    for spec in SPECS.values():
        assert re.search(rf"^  {re.escape(spec.id)} +{re.escape(spec.description.split()[0])}", listed, re.M), spec.id


def test_every_flag_of_every_subcommand_has_help():
    parser = CLI.build_parser()
    missing = []
    for name, parser_ in [("lord.py", parser), *subparsers(parser).items()]:
        for action in parser_._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []
    assert sorted(subparsers(parser)) == sorted(MAIN_SUBCOMMANDS)


@pytest.mark.parametrize("name", MAIN_SUBCOMMANDS)
def test_help_ends_with_examples_that_parse(name):
    lines = example_lines(name)
    assert 2 <= len(lines) <= 3
    parser = CLI.build_parser()
    for line in lines:
        words = shlex.split(line)
        assert words[:2] == ["python", "lord.py"] and name in words
        args = parser.parse_args(words[2:])
        assert args.command == name
        if getattr(args, "config", None) and args.set:
            apply_overrides(config.get_config(args.config), args.set)


def accepted_by(stage_command, item):
    """Whether some preset lets `stage_command --set item` through, as the stage checks it."""
    for preset in PRESETS.values():
        try:
            prefixes = override_prefixes(preset, STAGES[stage_command])
            apply_overrides(preset, [item], allowed_prefixes=prefixes)
        except UserError:
            continue
        return True
    return False


@pytest.mark.parametrize("name", sorted(STAGES))
def test_set_help_and_examples_show_keys_the_stage_accepts(name):
    (set_action,) = [action for action in subparsers(CLI.build_parser())[name]._actions if "--set" in
                     action.option_strings]
    shown = re.findall(r"--set ([\w.]+=\S+?)[,)]?(?:\s|$)", set_action.help + " ")
    shown += [item for line in example_lines(name) for item in re.findall(r"--set (\S+)", line)]
    assert shown, f"{name} --set shows no key"
    for item in shown:
        assert accepted_by(name, item), f"{name} --set {item} is refused"
    if name != "train":
        assert not accepted_by(name, "train.n_epochs=50")


@pytest.mark.parametrize("name", MAIN_SUBCOMMANDS)
def test_global_options_mean_the_same_on_either_side(name):
    parser = CLI.build_parser()
    options = ["-bd", "b", "--device", "cpu", "--seed", "3", "-q"]
    before = vars(parser.parse_args([*options, name, *REQUIRED[name]]))
    after = vars(parser.parse_args([name, *REQUIRED[name], *options]))
    assert before == after
    assert (before["base_dir"], before["device"], before["seed"], before["quiet"]) == ("b", "cpu", 3, True)
    defaults = vars(parser.parse_args([name, *REQUIRED[name]]))
    assert (defaults["base_dir"], defaults["device"], defaults["seed"], defaults["quiet"]) == (".", "auto", 0, False)
    kept = vars(parser.parse_args(["--device", "cuda", "--seed", "5", name, *REQUIRED[name], "-q"]))
    assert (kept["device"], kept["seed"], kept["quiet"]) == ("cuda", 5, True)


def test_serve_device_is_the_global_device(monkeypatch):
    calls = []
    monkeypatch.setattr(serve, "serve", lambda *args, **kwargs: calls.append(kwargs["device"]))
    assert CLI.main(["serve", "--device", "cpu"]) == 0
    assert CLI.main(["--device", "cpu", "serve"]) == 0
    assert CLI.main(["serve"]) == 0
    assert calls == ["cpu", "cpu", "auto"]


def test_a_flag_means_one_thing_in_every_subcommand():
    meanings = {}
    for name, parser_ in subparsers(CLI.build_parser()).items():
        for action in parser_._actions:
            for flag in action.option_strings:
                meanings.setdefault(flag, set()).add(action.dest)
    assert {flag: dests for flag, dests in meanings.items() if len(dests) > 1} == {}
    assert meanings["-i"] == meanings["--input"] == {"input"}
    assert meanings["-o"] == meanings["--output"] == {"output"}
    parse = CLI.build_parser().parse_args
    for spelling in ("-i", "--input", "--img-path", "--img"):
        assert parse(["manipulate", "-mn", "m", spelling, "a.png", "-o", "b.png"]).input == "a.png"
    for spelling in ("-o", "--output", "--output-img-path"):
        assert parse(["manipulate", "-mn", "m", "-i", "a.png", spelling, "b.png"]).output == "b.png"
    for spelling in ("-r", "--reference", "--reference-img-path"):
        assert parse(["manipulate", "-mn", "m", "-i", "a", "-o", "b", spelling, "c"]).reference == "c"
    for spelling in ("-i", "--input", "--input-dir"):
        assert parse(["import-model", spelling, "d", "-mn", "m"]).input == "d"
    for spelling in ("-o", "--output"):
        assert parse(["evaluate", "-mn", "m", "-dn", "d", spelling, "r.json"]).output == "r.json"
    label = [action for action in subparsers(CLI.build_parser())["manipulate"]._actions if action.dest == "label"]
    assert "index" in label[0].help and "info -mn" in label[0].help


# -- a model written by hand: `info`, the Model tab of `serve`, evaluate's --output --------------------------


@pytest.fixture
def handmade(tmp_path):
    """A base dir with `names` (3 named classes of 16 px images) and a LORD model `m` of lord-tiny with
    one --set value whose stage files exist but hold nothing (enough for everything before loading them)."""
    base = tmp_path / "base"
    rng = np.random.default_rng(0)
    dataset = store.make_dataset(rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8), [0, 1, 2, 0, 1, 2],
                                 class_names=np.asarray(["cat", "dog", "owl"]))
    store.save(BaseDir(base).data_path("names"), dataset)
    model_config = apply_overrides(config.get_config("lord-tiny"), ["train.n_epochs=3"])
    model_config.update(config_name="lord-tiny", seed=0,
                        data={"name": "names", "img_shape": [16, 16, 3], "n_classes": 3, "n_images": 6,
                              "fingerprint": "0"})
    model_dir = BaseDir(base).model_dir("m")
    atomic_write_json(model_dir / "config.json", model_config)
    for stage in ("latent", "amortized"):
        (model_dir / f"{stage}.pt").write_bytes(b"")
    return base


def test_info_prints_labels_with_names_stages_and_config(handmade, run_cli):
    result = run_cli("-bd", handmade, "info", "-mn", "m")
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0] == "model m: lord, preset lord-tiny, seed 0"
    assert lines[1] == "data: names, 6 images of 16x16x3"
    assert lines[2:6] == ["labels (classes): 0..2, the indices --label takes", "  0: cat", "  1: dog", "  2: owl"]
    assert "stages: latent done, amortized done" in lines
    assert "--set values: train.n_epochs=3" in lines
    assert json.loads(lines[-1].split("config: ", 1)[1])["train"]["n_epochs"] == 3
    as_json = json.loads(run_cli("-bd", handmade, "info", "-mn", "m", "--json").out)
    assert as_json["label_names"] == ["cat", "dog", "owl"] and as_json["n_labels"] == 3
    assert as_json["stages"] == {"latent": "done", "amortized": "done"} and as_json["set_values"] == ["train.n_epochs=3"]
    overview = serve.model_overview(handmade, "m", PRESETS)
    assert overview.labels == "labels (classes): 0: cat, 1: dog, 2: owl"
    assert overview.labels in serve.overview_markdown(overview)
    missing = run_cli("-bd", handmade, "info", "-mn", "other")
    assert missing.code == 1 and len(missing.err_lines) == 1 and "no model named 'other'" in missing.err


def test_evaluate_refuses_to_replace_a_file_that_is_not_its_own_result(handmade, run_cli, tmp_path):
    """The refusal comes before the evaluation: the model's stage files are empty, so any run that gets
    past the check ends at loading them."""
    evaluate = ["-bd", handmade, "--device", "cpu", "evaluate", "-mn", "m", "-dn", "names", "-o"]
    foreign = tmp_path / "notes.json"
    foreign.write_text("my notes\n")
    refused = run_cli(*evaluate, foreign)
    assert refused.code == 1 and len(refused.err_lines) == 1
    assert "exists and is not an evaluation of model 'm' on 'names', stage amortized: use --overwrite" in refused.err
    assert foreign.read_text() == "my notes\n"
    forced = run_cli(*evaluate, foreign, "--overwrite")
    assert forced.code == 1 and "cannot load weights" in forced.err
    own = tmp_path / "own.json"
    result = {"model": "m", "data": "names", "stage": "amortized", "seed": 0, "version": lord.__version__,
              "reconstruction": None}
    own.write_text(json.dumps(result))
    assert "cannot load weights" in run_cli(*evaluate, own).err
    own.write_text(json.dumps(dict(result, stage="latent")))
    assert "use --overwrite" in run_cli(*evaluate, own).err


# -- the published code's model directories ------------------------------------------------------------------


@pytest.fixture
def published(tmp_path):
    """A base dir whose cache/models/pub is a lord-pytorch model directory as its `save` writes it."""
    base = tmp_path / "base"
    original_config = original.lord_pytorch_config()
    original.write_original_dir(BaseDir(base).model_dir("pub"), original_config,
                                *original.lord_pytorch_states(original_config, 3))
    Image.new("RGB", (8, 8)).save(tmp_path / "face.png")
    return base


@pytest.mark.parametrize("args", [
    ["manipulate", "-mn", "pub", "-i", "{tmp}/face.png", "-o", "{tmp}/out.png"],
    ["serve", "-mn", "pub"],
    ["evaluate", "-mn", "pub", "-dn", "names"],
    ["info", "-mn", "pub"],
    ["train", "-dn", "names", "-mn", "pub"],
    ["train", "-dn", "names", "-mn", "pub", "--resume"],
    ["train-encoders", "-dn", "names", "-mn", "pub"],
    ["train-synthesis", "-dn", "names", "-mn", "pub"],
])
def test_a_published_model_directory_is_recognised(published, run_cli, args, tmp_path):
    result = run_cli("-bd", published, *(arg.format(tmp=tmp_path) for arg in args))
    assert result.code == 1 and len(result.err_lines) == 1, result
    assert "is a model directory of the published code (config.pkl, no config.json)" in result.err
    command = result.err.split("import it first with: ", 1)[1].strip()
    assert command == (f"python lord.py -bd {published} import-model -i {BaseDir(published).model_dir('pub')} "
                       "-mn pub-imported")


def test_the_suggested_import_command_works(published, run_cli):
    message = run_cli("-bd", published, "info", "-mn", "pub").err
    command = shlex.split(message.split("import it first with: ", 1)[1])
    assert run_cli(*command[2:]).code == 0
    assert "stages: latent done, amortized done" in run_cli("-bd", published, "info", "-mn", "pub-imported").out
    into_itself = run_cli("-bd", published, "import-model", "-i", BaseDir(published).model_dir("pub"), "-mn", "pub",
                          "--overwrite")
    assert into_itself.code == 1 and "is where model 'pub' would be written" in into_itself.err
    assert (BaseDir(published).model_dir("pub") / "config.pkl").is_file()


def docs_command_lines():
    """The `python lord.py` lines of docs/cli.md's code blocks."""
    lines, in_block = [], False
    for line in (REPO / "docs" / "cli.md").read_text().replace("\\\n", " ").splitlines():
        if line.startswith("```"):
            in_block = not in_block
        elif in_block and line.startswith("python lord.py"):
            lines.append(line.split(" #")[0].strip())
    return lines


def test_the_cli_reference_commands_parse():
    lines = docs_command_lines()
    assert len(lines) > 20
    parser = CLI.build_parser()
    documented = set()
    for line in lines:
        args = parser.parse_args(shlex.split(line)[2:])
        documented.add(args.command)
        if getattr(args, "config", None) and args.set:
            apply_overrides(config.get_config(args.config), args.set)
        if args.command in STAGES and args.command != "train":
            assert all(accepted_by(args.command, item) for item in args.set), line
    assert documented == set(MAIN_SUBCOMMANDS)
