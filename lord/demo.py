"""`lord.py demo`: the whole LORD pipeline on a small synthetic set, in minutes on a CPU.

Renders a simpler variant of the synthetic set: 24 object classes, upright only (the full set has 8
rotations), each under the same 54 poses and lightings (3 sizes, 9 positions, 2 lightings). Rotation
is left out because a rotation of one arbitrary silhouette has no counterpart in another: nothing in
the images says which rotation of object A matches which of object B, so content transfer could not
be scored against the rendered ground truth (with 4 rotations, the translations' MSE to the ground
truth was 0.011 to 0.014 at the best of the 4 rotations, 0.025 at the rendered one). Half of the 1296 images
are held out, so that the evaluation's own classifier and probes, trained on part of the held-out
images, can be trusted. It trains stage 1 and stage 2 with a small preset, writes a translation grid
of held-out images (content of each column, class of each row) made by the encoders, which never saw
those images, and evaluates the encoders on every held-out image with `lord.py evaluate`.
"""

import shlex
import time
from pathlib import Path

from lord.assets import BaseDir
from lord.data import preprocess, store
from lord.data.split import split_samples
from lord.errors import UserError
from lord.evaluation.evaluate import evaluate
from lord.inference import load_model
from lord.training import train, train_encoders
from lord.training.common import pick_samples
from lord.visualize import save_png, translation_grid, upscale

DATA_NAME = "demo"
MODEL_NAME = "demo"
IMG_SIZE = 32
N_CLASSES = 24
GRID_UPSCALE = 4  # nearest-neighbour, so the 32x32 cells are easy to see
TEST_SPLIT = 0.5
N_ROTATIONS = 1  # upright only, where the full synthetic set has 8 (see the module docstring)


def demo_outputs(base):
    return [
        base.data_path(DATA_NAME), base.data_path(f"{DATA_NAME}-train"), base.data_path(f"{DATA_NAME}-test"),
        base.model_dir(MODEL_NAME),
    ]


def run_demo(base_dir, config, config_name="lord-tiny", device="auto", seed=0, quiet=False, overrides=(),
             overwrite=False):
    base = BaseDir(base_dir)
    existing = [str(path) for path in demo_outputs(base) if path.exists()]
    if existing and not overwrite:
        raise UserError(f"an earlier demo's outputs exist ({existing[0]}); use --overwrite to replace them")
    started = time.perf_counter()
    timings = {}

    def timed(name, function, *args, **kwargs):
        begin = time.perf_counter()
        result = function(*args, **kwargs)
        timings[name] = time.perf_counter() - begin
        return result

    timed("render", preprocess, base_dir, "synthetic", None, DATA_NAME, overwrite=overwrite, quiet=quiet,
          img_size=IMG_SIZE, n_classes=N_CLASSES, rotations=N_ROTATIONS, seed=seed)
    timed("split", split_samples, base_dir, DATA_NAME, f"{DATA_NAME}-train", f"{DATA_NAME}-test", TEST_SPLIT,
          seed=seed, overwrite=overwrite, quiet=quiet)
    model_dir = timed("train", train, base_dir, f"{DATA_NAME}-train", MODEL_NAME, config, overrides=overrides,
                      config_name=config_name, overwrite=overwrite, device=device, seed=seed, quiet=quiet)
    timed("train-encoders", train_encoders, base_dir, f"{DATA_NAME}-train", MODEL_NAME, device=device, seed=seed,
          quiet=quiet)

    test = store.load(base.data_path(f"{DATA_NAME}-test"))
    model = load_model(base_dir, MODEL_NAME, device=device)
    chosen = pick_samples(test.classes, min(8, test.n_classes), seed)
    images = test.imgs[chosen]
    grid = translation_grid(images, images, model.translate_images(images, images))
    grid_path = model_dir / "demo-translation.png"
    save_png(grid_path, upscale(grid, GRID_UPSCALE))
    evaluation_path = model_dir / f"evaluation-{DATA_NAME}-test-amortized.json"
    result = timed("evaluate", evaluate, base_dir, MODEL_NAME, f"{DATA_NAME}-test", stage="amortized",
                   output=evaluation_path, seed=seed, device=device, quiet=quiet, weighted_distances=False)

    if not quiet:
        total = time.perf_counter() - started
        losses = final_losses(model_dir)
        print()
        print(f"demo finished in {total / 60:.1f} min ("
              + ", ".join(f"{name} {seconds:.0f}s" for name, seconds in timings.items()) + ")")
        for stage, values in losses.items():
            print(f"  final {stage} losses: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
        print(f"  data:        {base.preprocess_dir}/{DATA_NAME}{{,-train,-test}}.npz")
        print(f"  model:       {model_dir}")
        print(f"  samples:     {model_dir / 'samples'}")
        print(f"  tensorboard: {base.tensorboard_dir(MODEL_NAME)}")
        print(f"  translation of held-out images (row: class source, column: content source): {grid_path}")
        print(f"  evaluation of the encoders on the held-out images: {evaluation_path}")
        print(headline(result))
        base_option = "" if Path(base_dir) == Path(".") else f" -bd {shlex.quote(str(base_dir))}"
        print(f"translate your own images with it in a web page: python lord.py{base_option} serve -mn {MODEL_NAME}")
    return grid_path


def headline(result):
    """The evaluation's key numbers in one sentence, each beside its reference."""
    translation, transfer, leakage = result["translation"], result["content_transfer"], result["class_from_content"]
    return (
        f"  held out: translations classified as the class source's class {translation['target_class_accuracy']:.3f}"
        f" (as the content source's {translation['source_class_accuracy']:.3f}; the classifier on real images "
        f"{translation['classifier_accuracy']:.3f}); content transfer MSE {transfer['mse']:.4f} against "
        f"{transfer['baseline_unchanged']['mse']:.4f} for the content source unchanged; class read from the "
        f"content codes by an MLP {leakage['mlp']:.3f} (chance {leakage['chance']:.3f})"
    )


def final_losses(model_dir):
    from lord.training.loop import read_metrics

    last = {}
    for record in read_metrics(model_dir / "metrics.jsonl"):
        last[record["stage"]] = {k: v for k, v in record.items()
                                 if isinstance(v, float) and k not in ("seconds", "images_per_second")}
    return last

