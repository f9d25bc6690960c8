"""Every command line of the lord-pytorch and OverLORD READMEs runs with `python lord.py` and does what
it did there: the real parser takes it, and the library function it reaches gets the same meaning
(the training functions are replaced by recorders; what they do is tested elsewhere)."""

import shlex

import pytest

import config
from conftest import CLI

# lord-pytorch's README (placeholders filled in); `lord.py` there is this lord.py.
LORD_PYTORCH = [
    "lord.py --base-dir out preprocess --dataset-id cars3d --dataset-path raw --data-name cars3d",
    "lord.py --base-dir out split-classes --input-data-name cars3d --train-data-name cars3d-train "
    "--test-data-name cars3d-test --num-test-classes 20",
    "lord.py --base-dir out split-samples --input-data-name cars3d --train-data-name cars3d-train "
    "--test-data-name cars3d-test --test-split 0.2",
    "lord.py --base-dir out train --data-name cars3d-train --model-name cars3d-model",
    "lord.py --base-dir out train-encoders --data-name cars3d-train --model-name cars3d-model",
]
# OverLORD's README; `main.py` there is this lord.py.
OVERLORD = [
    "main.py preprocess --dataset-id ffhq --dataset-path ffhq-dataset --out-data-name ffhq-x256-age",
    "main.py train --config ffhq --data-name ffhq-x256-age --model-name overlord-ffhq-x256-age",
    "main.py preprocess --dataset-id celeba --dataset-path celeba-dataset --out-data-name celeba-x128-identity",
    "main.py train --config celeba --data-name celeba-x128-identity --model-name overlord-celeba-x128-identity",
    "main.py preprocess --dataset-id afhq --dataset-path afhq-dataset --split train --out-data-name afhq-x256",
    "main.py train --config afhq --data-name afhq-x256 --model-name overlord-afhq-x256",
    "main.py preprocess --dataset-id celebahq --dataset-path celebahq-dataset --out-data-name celebahq-x256-gender",
    "main.py train --config celebahq --data-name celebahq-x256-gender --model-name overlord-celebahq-x256-gender",
    "main.py train --config celebahq_hair --data-name celebahq-x256-gender "
    "--model-name overlord-celebahq-x256-gender-hair",
    "main.py manipulate --model-name overlord-ffhq-x256-age --img face.png --output face_in_all_ages.png",
    "main.py manipulate --model-name overlord-celeba-x128-identity --img attributes.png --reference identity.png "
    "--output translation.png",
    "main.py manipulate --model-name overlord-afhq-x256 --img pose.png --reference appearance.png "
    "--output translation.png",
    "main.py manipulate --model-name overlord-celebahq-x256-gender --img face.png --output face_in_all_genders.png",
    "main.py manipulate --model-name overlord-celebahq-x256-gender-hair --img face.png --reference hairstyle.png "
    "--output translation.png",
]


@pytest.fixture
def recorded(monkeypatch):
    """Replace the library functions the CLI dispatches to by recorders of their arguments."""
    import lord.data
    import lord.inference
    import lord.training

    calls = []

    def recorder(name):
        return lambda *args, **kwargs: calls.append((name, args, kwargs))

    for module, name in ((lord.data, "preprocess"), (lord.training, "train"), (lord.training, "train_all_stages"),
                         (lord.training, "train_encoders"), (lord.inference, "manipulate")):
        monkeypatch.setattr(module, name, recorder(name))
    return calls


def run(line):
    return CLI.main(shlex.split(line)[1:])


@pytest.mark.parametrize("line", [line for line in LORD_PYTORCH + OVERLORD if " split-" not in line])
def test_the_published_command_lines_run(line, recorded):
    """(split-classes and split-samples read real files; their flags are checked below.)"""
    assert run(line) == 0
    assert len(recorded) == 1


def test_split_flags_are_the_published_ones():
    parser = CLI.build_parser()
    for line in LORD_PYTORCH[1:3]:
        args = parser.parse_args(shlex.split(line)[1:])
        assert (args.input_data_name, args.train_data_name, args.test_data_name) == (
            "cars3d", "cars3d-train", "cars3d-test")
    assert parser.parse_args(shlex.split(LORD_PYTORCH[1])[1:]).num_test_classes == 20
    assert parser.parse_args(shlex.split(LORD_PYTORCH[2])[1:]).test_split == 0.2


def test_lord_pytorch_train_is_stage_one_with_the_paper_preset(recorded):
    run(LORD_PYTORCH[3])
    name, args, kwargs = recorded[0]
    assert name == "train" and args[1:3] == ("cars3d-train", "cars3d-model")
    assert args[3] == config.get_config("lord") and kwargs["config_name"] == "lord"


@pytest.mark.parametrize("published, preset", sorted(config.OVERLORD_NAMES.items()))
def test_overlord_train_runs_all_stages_with_the_published_config(recorded, published, preset):
    line = next(line for line in OVERLORD if f"--config {published} " in line)
    run(line)
    name, args, kwargs = recorded[0]
    assert name == "train_all_stages"
    assert args[3] == config.get_config(preset) and kwargs["config_name"] == preset


def test_overlord_preprocess_takes_its_defaults(recorded):
    run(OVERLORD[2])
    name, args, kwargs = recorded[0]
    assert name == "preprocess" and args[1:4] == ("celeba", "celeba-dataset", "celeba-x128-identity")
    assert kwargs["overlord_defaults"] is True
    run("lord.py preprocess --dataset-id celeba --dataset-path raw --data-name celeba")
    assert recorded[1][2]["overlord_defaults"] is False
    run(OVERLORD[4])
    assert recorded[2][2]["split"] == "train"


def test_overlord_celeba_default_size_is_128(tmp_path):
    from lord.data.registry import get_spec

    spec = get_spec("celeba")
    assert spec.options["img_size"] == 64 and spec.overlord_options == {"img_size": 128}


def test_overlord_manipulate_flags(recorded):
    run(OVERLORD[-1])
    name, args, kwargs = recorded[0]
    assert name == "manipulate"
    assert args[1:4] == ("overlord-celebahq-x256-gender-hair", "face.png", "translation.png")
    assert kwargs["reference_path"] == "hairstyle.png"
