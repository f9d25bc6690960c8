"""`evaluate` and `report`: the JSON shape on tiny trained models, the metric functions with fake
generators, the translation classifier, the report table through the CLI, and one-line errors."""

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import CLI, overlord_set_args, set_args
from lord.assets import BaseDir
from lord.data import store
from lord.evaluation import evaluate as evaluation
from lord.evaluation.classifier import train_classifier
from lord.evaluation.distances import ImageDistances
from lord.evaluation.pairs import GroundTruth, random_of_same_class, sample_pairs

PROBE_KEYS = {"logistic", "mlp", "chance"}
DISTANCE_KEYS = {"perceptual", "mse", "ssim", "lpips"}
TOP_KEYS = {"model", "data", "stage", "seed", "version", "class_from_content", "content_from_class",
            "content_transfer", "reconstruction", "translation", "fid", "fid_paper", "lpips_diversity", "face"}


def images_of(dataset):
    tensor = torch.from_numpy(dataset.imgs).permute(0, 3, 1, 2).float() / 255

    def load(indices):
        return tensor[torch.as_tensor(np.asarray(indices))]

    return load


@pytest.fixture(scope="module")
def lord_models(tmp_path_factory):
    """A base dir with `syn` (16 px, 3 classes) split into train and test, `nocontent` (the test part
    without content ids) and `small` (8 px), and `tiny`: a LORD model trained 1 epoch per stage;
    `latent-only` has stage 1 only."""
    base = tmp_path_factory.mktemp("evaluate")
    common = ["-bd", str(base), "-q", "--device", "cpu"]
    assert CLI.main([*common, "preprocess", "-di", "synthetic", "-dn", "syn", "--img-size", "16",
                     "--n-classes", "3"]) == 0
    assert CLI.main([*common, "split-samples", "-idn", "syn", "-trdn", "train", "-tsdn", "test", "-ts", "0.2"]) == 0
    paths = BaseDir(base)
    test = store.load(paths.data_path("test"))
    store.save(paths.data_path("nocontent"),
               store.make_dataset(test.imgs, test.classes, None, n_classes=test.n_classes))
    assert CLI.main([*common, "preprocess", "-di", "synthetic", "-dn", "small", "--img-size", "8",
                     "--n-classes", "3"]) == 0
    tiny = set_args("train.n_epochs=1", "train_encoders.n_epochs=1")
    assert CLI.main([*common, "train", "-dn", "train", "-mn", "tiny", "-cf", "lord-tiny", *tiny]) == 0
    assert CLI.main([*common, "train-encoders", "-dn", "train", "-mn", "tiny"]) == 0
    shutil.copytree(paths.model_dir("tiny"), paths.model_dir("latent-only"))
    (paths.model_dir("latent-only") / "amortized.pt").unlink()
    return base


def check_shape(result, model, data, stage):
    assert set(result) == TOP_KEYS
    assert (result["model"], result["data"], result["stage"], result["seed"]) == (model, data, stage, 0)
    assert isinstance(result["version"], str) and result["version"]
    for family in ("class_from_content", "content_from_class"):
        if result[family] is not None:
            assert set(result[family]) == PROBE_KEYS
            assert all(0.0 <= value <= 1.0 for value in result[family].values())
    assert set(result["reconstruction"]) == {"perceptual", "mse"} and result["reconstruction"]["mse"] > 0
    assert set(result["translation"]) == {"target_class_accuracy", "source_class_accuracy", "classifier_accuracy"}
    assert all(0.0 <= value <= 1.0 for value in result["translation"].values())


def test_evaluate_writes_the_fixed_json_shape(lord_models, offline, fast_classifier, run_cli):
    cli = run_cli("-bd", lord_models, "--device", "cpu", "evaluate", "-mn", "tiny", "-dn", "train",
                  "--stage", "latent", "--n-pairs", "64")
    assert cli.code == 0, cli
    written = BaseDir(lord_models).model_dir("tiny") / "evaluation-train-latent.json"
    result = json.loads(written.read_text())
    check_shape(result, "tiny", "train", "latent")
    assert "codes from the embeddings" in cli.out and "lower is better" in cli.out and "chance" in cli.out
    transfer = result["content_transfer"]
    assert set(transfer) == DISTANCE_KEYS | {"baseline_unchanged", "baseline_random_same_class", "n_pairs"}
    assert transfer["n_pairs"] == 64
    for values in (transfer, transfer["baseline_unchanged"], transfer["baseline_random_same_class"]):
        assert values["perceptual"] is None and values["lpips"] is None
        assert values["mse"] > 0 and -1.0 <= values["ssim"] <= 1.0
    assert result["reconstruction"]["perceptual"] is None
    assert result["fid"] is None and result["lpips_diversity"] is None
    warnings = [line for line in cli.err_lines if line.startswith("warning:")]
    assert len(warnings) == 2 and "LORD_VGG16_WEIGHTS" in warnings[0] and "LORD_LPIPS_WEIGHTS" in warnings[1]


def test_evaluate_uses_the_encoders_on_other_data_and_nulls_what_does_not_apply(lord_models, offline, fast_classifier,
                                                                               tmp_path):
    with_contents = evaluation.evaluate(lord_models, "tiny", "test", n_pairs=32, device="cpu", quiet=True)
    check_shape(with_contents, "tiny", "test", "amortized")
    assert with_contents["content_from_class"] is not None and with_contents["content_transfer"]["n_pairs"] == 32
    output = tmp_path / "elsewhere" / "result.json"
    without = evaluation.evaluate(lord_models, "tiny", "nocontent", output=output, n_pairs=32, device="cpu",
                                  quiet=True)
    check_shape(without, "tiny", "nocontent", "amortized")
    assert without["content_from_class"] is None and without["content_transfer"] is None
    assert json.loads(output.read_text()) == without
    assert without["class_from_content"] == with_contents["class_from_content"]


def test_report_tabulates_what_evaluate_wrote(lord_models, offline, fast_classifier, run_cli, tmp_path):
    for stage in ("latent", "amortized"):
        assert run_cli("-bd", lord_models, "-q", "--device", "cpu", "evaluate", "-mn", "tiny", "-dn", "train",
                       "--stage", stage, "--n-pairs", "16", "--output", tmp_path / f"evaluation-{stage}.json").code == 0
    table = run_cli("report", tmp_path, "--columns", "class_from_content.mlp,translation",
                    "--columns", "reconstruction.mse")
    assert table.code == 0, table
    lines = table.out.strip().splitlines()
    assert [cell.strip() for cell in lines[0].split("|")[1:-1]] == [
        "model", "data", "stage", "class_from_content.mlp", "translation.target_class_accuracy",
        "translation.source_class_accuracy", "translation.classifier_accuracy", "reconstruction.mse",
    ]
    assert [line.split("|")[3].strip() for line in lines[2:]] == ["amortized", "latent"]
    latent = json.loads((tmp_path / "evaluation-latent.json").read_text())
    assert lines[3].split("|")[-2].strip() == f"{latent['reconstruction']['mse']:.4g}"
    csv_table = run_cli("report", tmp_path / "evaluation-latent.json", "--format", "csv")
    assert csv_table.code == 0 and csv_table.out.splitlines()[1].startswith("tiny,train,latent,")
    model_dir = BaseDir(tmp_path / "base").model_dir("named")
    model_dir.mkdir(parents=True)
    shutil.copy(tmp_path / "evaluation-latent.json", model_dir / "evaluation-train-latent.json")
    by_name = run_cli("-bd", tmp_path / "base", "report", "named", "--columns", "reconstruction")
    assert by_name.code == 0, by_name
    assert by_name.out.strip().splitlines()[2].startswith("| tiny | train | latent |")


@pytest.mark.parametrize("args, message", [
    (["-mn", "nobody", "-dn", "train"], "no model named 'nobody'"),
    (["-mn", "tiny", "-dn", "small"], "has images of shape (8, 8, 3)"),
    (["-mn", "latent-only", "-dn", "train", "--stage", "amortized"], "no completed amortized stage"),
    (["-mn", "latent-only", "-dn", "test"], "can only be evaluated on the data it was trained on"),
    (["-mn", "tiny", "-dn", "train", "--stage", "synthesis"], "no synthesis stage"),
    (["-mn", "tiny", "-dn", "missing"], "no preprocessed data named 'missing'"),
])
def test_evaluate_errors_are_one_line(lord_models, run_cli, args, message):
    cli = run_cli("-bd", lord_models, "-q", "evaluate", *args)
    assert cli.code != 0
    assert len(cli.err_lines) == 1 and cli.err_lines[0].startswith("error: ") and message in cli.err_lines[0]
    assert not list(BaseDir(lord_models).model_dir("latent-only").glob("evaluation*"))


def test_report_errors_are_one_line(tmp_path, run_cli):
    (tmp_path / "other.json").write_text('{"model": "m"}')
    for args in (["nowhere.json"], [tmp_path / "other.json"], [tmp_path]):
        cli = run_cli("-bd", tmp_path, "report", *args)
        assert cli.code != 0 and len(cli.err_lines) == 1 and cli.err_lines[0].startswith("error: ")


# ---------------------------------------------------------------- metric functions


@pytest.fixture(scope="module")
def synthetic():
    """The 16 px synthetic set with 3 classes, every content id in every class."""
    from lord.data.synthetic import load

    return load(img_size=16, n_classes=3, quiet=True)


def test_pairs_have_different_classes_and_their_ground_truth(synthetic):
    classes, contents = synthetic.classes, synthetic.contents
    keep = np.random.default_rng(0).random(len(classes)) < 0.3
    classes, contents = classes[keep], contents[keep]
    source, reference, target = sample_pairs(classes, 500, seed=3, contents=contents)
    assert len(source) == 500 and len(set(zip(source.tolist(), reference.tolist()))) == 500
    assert np.all(classes[source] != classes[reference]) and np.all(target != reference)
    assert np.array_equal(classes[target], classes[reference]) and np.array_equal(contents[target], contents[source])
    again = sample_pairs(classes, 500, seed=3, contents=contents)
    assert all(np.array_equal(x, y) for x, y in zip((source, reference, target), again))
    assert not np.array_equal(sample_pairs(classes, 500, seed=4, contents=contents)[0], source)
    truth = GroundTruth(classes, contents)
    assert truth.target([classes[0]], [contents[0]])[0] == 0
    assert truth.target([classes.max() + 1], [0])[0] == -1
    others = random_of_same_class(classes, target, seed=0)
    assert np.all(others != target) and np.array_equal(classes[others], classes[target])


def test_pairs_are_as_many_as_exist():
    classes, contents = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 5])
    source, reference, target = sample_pairs(classes, 100, seed=0, contents=contents)
    assert sorted(zip(source.tolist(), reference.tolist())) == [(0, 3), (2, 1)]
    assert target.tolist() == [2, 0] or target.tolist() == [0, 2]
    assert [len(part) for part in sample_pairs(np.zeros(5, dtype=int), 10, seed=0)] == [0, 0]


def test_content_transfer_is_zero_for_an_oracle_and_large_for_a_constant_generator(synthetic):
    load = images_of(synthetic)
    truth = GroundTruth(synthetic.classes, synthetic.contents)

    def oracle(source, reference):
        return load(truth.target(synthetic.classes[reference], synthetic.contents[source]))

    def constant(source, reference):
        return torch.full((len(source), 3, 16, 16), 0.5)

    common = dict(classes=synthetic.classes, contents=synthetic.contents, n_pairs=200, seed=0,
                  distances=ImageDistances(), batch_size=64)
    perfect = evaluation.content_transfer(oracle, load, **common)
    flat = evaluation.content_transfer(constant, load, **common)
    assert perfect["mse"] == 0.0 and perfect["ssim"] == pytest.approx(1.0)
    assert perfect["perceptual"] is None and perfect["lpips"] is None and perfect["n_pairs"] == 200
    assert flat["mse"] > 0.01 and flat["ssim"] < 0.5
    for baseline in ("baseline_unchanged", "baseline_random_same_class"):
        assert perfect[baseline] == flat[baseline]
        assert perfect[baseline]["mse"] > 0.005 and perfect[baseline]["ssim"] < 0.9
    one_class = evaluation.content_transfer(oracle, load, **dict(common, classes=np.zeros_like(synthetic.classes)))
    assert one_class is None


def test_translation_classifier_learns_easy_classes_and_scores_translations(synthetic):
    load = images_of(synthetic)
    classifier, held_out = train_classifier(load, synthetic.classes, seed=0)
    assert held_out > 0.95
    again, held_out_again = train_classifier(load, synthetic.classes, seed=0)
    assert held_out_again == held_out
    assert all(torch.equal(a, b) for a, b in zip(classifier.state_dict().values(), again.state_dict().values()))
    source, reference = sample_pairs(synthetic.classes, 200, seed=1)
    truth = GroundTruth(synthetic.classes, synthetic.contents)

    def oracle(source, reference):
        return load(truth.target(synthetic.classes[reference], synthetic.contents[source]))

    target, kept = evaluation.translation_accuracy(oracle, classifier, synthetic.classes, source, reference, 64)
    assert target > 0.95 and kept < 0.05
    unchanged, still = evaluation.translation_accuracy(lambda a, b: load(a), classifier, synthetic.classes,
                                                       source, reference, 64)
    assert unchanged < 0.05 and still > 0.95


def test_fid_and_lpips_diversity_with_stand_in_feature_networks(synthetic):
    load = images_of(synthetic)
    source, reference = sample_pairs(synthetic.classes, 64, seed=0)

    def features(images):
        return torch.nn.functional.avg_pool2d(images, 4).flatten(1)

    same = evaluation.frechet_inception_distance(lambda a, b: load(b), load, source, reference, features, 16)
    other = evaluation.frechet_inception_distance(lambda a, b: load(a), load, source, reference, features, 16)
    assert abs(same) < 1e-6 and other > 0.01

    def distance(a, b):
        return (a - b).abs().mean(dim=(1, 2, 3))

    ignores_reference = evaluation.lpips_diversity(lambda a, b: load(a), synthetic.classes, source[:4], reference[:4],
                                                   5, 0, distance, 16)
    follows_reference = evaluation.lpips_diversity(lambda a, b: load(b), synthetic.classes, source[:4],
                                                   reference[:4], 5, 0, distance, 16)
    assert ignores_reference == 0.0 and follows_reference > 0.01


# ---------------------------------------------------------------- OverLORD


def stand_in_weights(directory, monkeypatch):
    """Files with the official layouts of every feature network, filled with constants: they
    exercise the loading and the code paths, not the numbers."""
    from test_evaluate_paper import torchvision_inception_layout
    from test_evaluation_blocks import (
        ALEXNET_LAYOUT, LPIPS_LAYOUTS, VGG16_LAYOUT, fake_weights, official_inception_layout,
    )

    files = {"LORD_VGG16_WEIGHTS": ("vgg16.pth", VGG16_LAYOUT), "LORD_ALEXNET_WEIGHTS": ("alexnet.pth", ALEXNET_LAYOUT),
             "LORD_LPIPS_WEIGHTS": ("alex.pth", LPIPS_LAYOUTS["alex"]),
             "LORD_INCEPTION_WEIGHTS": ("inception.pth", official_inception_layout()),
             "LORD_IMAGENET_INCEPTION_WEIGHTS": ("imagenet-inception.pth", torchvision_inception_layout())}
    directory.mkdir()
    for env, (name, layout) in files.items():
        torch.save(fake_weights(layout), directory / name)
        monkeypatch.setenv(env, str(directory / name))


def test_overlord_families_null_without_weights_and_filled_with_them(synthetic32_base, offline, fast_classifier,
                                                                     run_cli, tmp_path, monkeypatch):
    base = tmp_path / "base"
    shutil.copytree(synthetic32_base, base)
    common = ["-bd", base, "-q", "--device", "cpu"]
    short = overlord_set_args("pose-invariant", "disentanglement.n_epochs=1", "amortization.n_epochs=1")
    assert run_cli(*common, "train", "-dn", "syn32", "-mn", "over", "-cf", "overlord-tiny-pose", *short).code == 0
    assert run_cli(*common, "train-encoders", "-dn", "syn32", "-mn", "over").code == 0
    cli = run_cli("-bd", base, "--device", "cpu", "evaluate", "-mn", "over", "-dn", "syn32", "--stage", "latent",
                  "--n-pairs", "16")
    assert cli.code == 0, cli
    result = json.loads((BaseDir(base).model_dir("over") / "evaluation-syn32-latent.json").read_text())
    check_shape(result, "over", "syn32", "latent")
    assert result["fid"] is None and result["fid_paper"] is None and result["lpips_diversity"] is None
    assert result["content_transfer"] is not None and result["class_from_content"] is not None
    assert any("fid is left null" in line and "LORD_INCEPTION_WEIGHTS" in line for line in cli.err_lines)
    paper_warnings = [line for line in cli.err_lines if "fid_paper" in line]
    assert len(paper_warnings) == 1 and paper_warnings[0].startswith("warning: fid_paper is left null")
    assert "LORD_IMAGENET_INCEPTION_WEIGHTS" in paper_warnings[0]
    assert any("lpips_diversity is left null" in line for line in cli.err_lines)

    stand_in_weights(tmp_path / "weights", monkeypatch)
    filled = evaluation.evaluate(base, "over", "syn32", n_pairs=8, device="cpu", quiet=True)
    check_shape(filled, "over", "syn32", "amortized")
    numbers = [filled["fid"], filled["fid_paper"], filled["lpips_diversity"], filled["reconstruction"]["perceptual"],
               *(filled["content_transfer"][name] for name in ("perceptual", "lpips"))]
    assert all(isinstance(value, float) and np.isfinite(value) for value in numbers)
