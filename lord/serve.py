"""`lord.py serve`: a local web page for the models of a base directory, on Gradio.

Two tabs. Translate: an uploaded image of any size or mode, translated to a label value or to the
label of a reference image, with exactly the pixels `manipulate` writes for the same inputs. For a
model of a face set the uploads are first aligned as FFHQ's faces were (`manipulate --align`; a
checkbox turns it off), and the page shows the aligned input. Model:
a model's config, its stages, the loss curves of metrics.jsonl and the latest sample grid of each
stage, refreshed while it trains. The page only reads the base directory: uploads and results live
in temporary folders. Gradio is the optional extra `pip install -e .[web]`; everything before
`build_page` works without it, so it is tested without a browser.
"""

import hashlib
import importlib.util
import ipaddress
import json
import logging
import math
import os
import re
import sys
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lord.assets import BaseDir, atomic_write_bytes, lock_path, open_regular_file, read_bounded
from lord.data.images import to_channels
from lord.errors import UserError
from lord.evaluation.face import FACE_LABELS
from lord.inference import MAX_STRIP_LABELS, fit_image, label_strips, load_model, read_input
from lord.model import (STAGES, arch_of, checkpoint_path, completed_stages, describe_model, label_names,
                        weights_path)
from lord.training import STAGE_CONFIG_KEYS
from lord.training.loop import read_metrics
from lord.visualize import encode_png

STAGE_TITLES = {"latent": "stage 1, latent optimization", "amortized": "stage 2, amortized encoders",
                "synthesis": "stage 3, synthesis"}
ENCODER_STAGES = ("amortized", "synthesis")
NOT_LOSSES = ("seconds", "images_per_second")
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
MAX_PIXELS = 89_478_485  # Pillow's own warning threshold for decompression bombs
CACHED_MODELS = 2
REFRESH_SECONDS = 5
IMAGE_HEIGHT = 256
PLOTS_PER_STAGE = 8  # one small plot per loss: their scales differ by orders of magnitude
PLOTS_PER_ROW = 2
PLOT_HEIGHT = 180
STRIP_HEIGHT = 160
# Small model images fill their box, with crisp pixels instead of a blur.
PAGE_CSS = ".pixels img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }"


# -- the base directory's models ------------------------------------------------------------------------


def model_names(base_dir):
    """Every model directory of the base dir, trained or in training, sorted."""
    models_dir = BaseDir(base_dir).models_dir
    if not models_dir.is_dir():
        return []
    return sorted(path.name for path in models_dir.iterdir() if (path / "config.json").is_file())


def has_encoders(model_dir):
    return any(stage in ENCODER_STAGES for stage in completed_stages(model_dir))


def translatable_models(base_dir):
    """The models that can encode new images: those with a completed stage 2 or 3."""
    base = BaseDir(base_dir)
    return [name for name in model_names(base_dir) if has_encoders(base.models_dir / name)]


def label_choices(names, n_labels):
    """(text shown, label value) for every label value: `6: 60-69` where the data names them, else `6`."""
    if names is None:
        return [(str(value), value) for value in range(n_labels)]
    return [(f"{value}: {name}", value) for value, name in enumerate(names)]


def is_face_model(base_dir, config):
    """Whether a model was trained on a face set (CelebA, RaFD, FFHQ, CelebA-HQ), as the evaluation
    decides: its labels, or its data's, are people's (`identity`, `age`, `gender`)."""
    if config.get("labeled_attribute") in FACE_LABELS:
        return True
    try:
        with np.load(BaseDir(base_dir).data_path(config["data"]["name"]), allow_pickle=False) as archive:
            return any(name in archive.files for name in FACE_LABELS)
    except (KeyError, TypeError, OSError, ValueError, UserError):
        return False


def alignment_available():
    """Whether the faces extra (dlib and the landmark model's package) is installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("dlib", "face_recognition_models"))


# -- translation ---------------------------------------------------------------------------------------------


def read_upload(path, channels, what="image"):
    """An uploaded file decoded as `manipulate` decodes it, after the checks a page needs: a file that
    is there, not empty, an image, and not so large that decoding it would exhaust the server."""
    if path is None:
        raise UserError(f"no {what} given: upload or drop one")
    path = Path(path)
    prefix = f"{what} {path.name!r}"
    try:
        size = path.stat().st_size
    except OSError:
        raise UserError(f"the uploaded {what} is gone; upload it again") from None
    if size == 0:
        raise UserError(f"{prefix} is an empty file")
    if size > MAX_UPLOAD_BYTES:
        raise UserError(f"{prefix} has {size / 2**20:.0f} MB, more than the {MAX_UPLOAD_BYTES // 2**20} MB "
                        "this page accepts")
    too_large = f"{prefix} has more than the {MAX_PIXELS / 1e6:.0f} megapixels this page accepts: make it smaller"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        raise UserError(too_large) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise UserError(f"{prefix} is not an image file that can be read") from None
    if width * height > MAX_PIXELS:
        raise UserError(too_large)
    try:
        return read_input(path, channels)
    except UserError as error:
        raise UserError(str(error).replace(str(path), repr(path.name))) from None


def model_image(path, model, align=False, what="image"):
    """An upload as `translate` takes it: decoded, and with `align` its largest face aligned at the
    model's size as `manipulate --align` does."""
    channels = model.img_shape[-1]
    if not align:
        return read_upload(path, channels, what)
    from lord.faces import FaceAligner

    image = read_upload(path, 3, what)
    try:
        aligned = FaceAligner().align(image, model.img_shape[0], name=f"{what} {Path(path).name!r}")
    except UserError as error:
        raise UserError(f"{error} (untick 'Align the face' to use the image as it is)") from None
    return to_channels(aligned, channels)


@dataclass
class Translation:
    """What the page shows for one request, each a uint8 (H, W, C) image."""

    model_input: np.ndarray  # the input centre-cropped and resized, as the encoders see it
    translation: np.ndarray
    strip: np.ndarray = None  # `manipulate`'s strip: the input, then every label value; None past MAX_STRIP_LABELS


def label_value(choice):
    """The label value picked in the list (or typed, or sent by a script) as an int: a whole number, never
    a rounded one (2.7 is refused, not taken for 2); the model checks its range."""
    if choice is None or choice == "":
        raise UserError("no label value chosen")
    if isinstance(choice, float) and math.isfinite(choice) and choice.is_integer():
        choice = int(choice)
    if type(choice) is int:
        return choice
    if isinstance(choice, str) and re.fullmatch(r"\s*[+-]?[0-9]{1,9}\s*", choice):
        return int(choice)
    raise UserError(f"label value {str(choice)[:40]!r} is not a whole number from the list")


def translate(model, image, label=None, reference=None):
    """One image translated to `label` or to the label (and correlated code) of `reference`, with
    the strip over every label value; the same calls, so the same pixels, as `manipulate`."""
    if (label is None) == (reference is None):
        raise ValueError("give either a label or a reference image")
    model.require_encoders()
    if reference is not None:
        translation = model.translate_images([image], [reference])[0, 0]
    else:
        if not 0 <= label < model.n_labels:
            raise UserError(f"label {label} is out of range: this model's labels are 0..{model.n_labels - 1}")
        translation = model.translate_to_labels([image], [label])[0, 0]
    strip = None
    if model.n_labels <= MAX_STRIP_LABELS:
        (strip,) = label_strips(model, [image], list(range(model.n_labels)))
    return Translation(fit_image(image, model.img_shape), translation, strip)


def weights_signature(model_dir):
    """What changes when a model is retrained or replaced: its config and weight files' times and sizes."""
    files = [model_dir / "config.json"] + [weights_path(model_dir, stage) for stage in STAGES]
    signature = []
    for path in files:
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        signature.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(signature)


class ModelCache:
    """Loaded models by name, reloaded when their files change; one lock, so concurrent requests
    never load the same model twice."""

    def __init__(self, base_dir, device, capacity=CACHED_MODELS):
        self.base_dir = base_dir
        self.device = device
        self.capacity = capacity
        self.models = OrderedDict()
        self.lock = threading.Lock()

    def get(self, model_name):
        if not model_name:
            raise UserError("no model chosen")
        model_dir = BaseDir(self.base_dir).existing_model_dir(model_name)
        signature = weights_signature(model_dir)
        with self.lock:
            cached = self.models.get(model_name)
            if cached is not None and cached[0] == signature:
                self.models.move_to_end(model_name)
                return cached[1]
            self.models.pop(model_name, None)
            model = load_model(self.base_dir, model_name, device=self.device)
            self.models[model_name] = (signature, model)
            while len(self.models) > self.capacity:
                self.models.popitem(last=False)
            return model


# -- looking at a model ------------------------------------------------------------------------------------


def loss_curves(records):
    """Per stage, per loss in the order the records name them (the total `loss` first), the points
    (epoch, value) to plot."""
    curves = {}
    for record in records:
        stage, epoch = record.get("stage"), record.get("epoch")
        if stage not in STAGES or not isinstance(epoch, int):
            continue
        losses = curves.setdefault(stage, {})
        for key, value in record.items():
            if isinstance(value, float) and key not in NOT_LOSSES and np.isfinite(value):
                losses.setdefault(key, []).append((epoch, value))
    return curves


def latest_samples(model_dir):
    """Per stage, the sample grid of its latest epoch: samples/<stage>-epoch-NNNN.png."""
    latest = {}
    samples = Path(model_dir) / "samples"
    if not samples.is_dir():
        return latest
    for path in sorted(samples.glob("*-epoch-*.png")):
        stage, _, epoch = path.stem.rpartition("-epoch-")
        if stage in STAGES and epoch.isdigit():
            latest[stage] = (path, int(epoch))
    return latest


def read_sample_grid(path):
    """A sample grid's PNG bytes, or None when the file is gone (a run with --overwrite started)."""
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def training_process(model_dir):
    """The 'PID HOST' of the run holding the model's lock, or None."""
    try:
        fields = lock_path(model_dir).read_text().split()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return " on ".join(fields[:2]) if fields else "another process"


@dataclass
class Overview:
    """What the Model tab shows of a model directory."""

    name: str
    config: dict
    differences: list  # None where the preset is unknown
    stages: list  # (stage, status text) for every stage of the architecture
    curves: dict = field(default_factory=dict)
    samples: dict = field(default_factory=dict)
    training: str = None
    labels: str = None  # the label values and their names, as `lord.py info` lists them


def plural(count, noun):
    return f"{count} {noun}" + ("" if count == 1 else "s")


def stage_status(config, stage, done, curves):
    epochs = [epoch for points in curves.get(stage, {}).values() for epoch, _ in points]
    block = config.get(STAGE_CONFIG_KEYS[arch_of(config)][stage], {})
    total = block.get("n_epochs") if isinstance(block, dict) else None
    of_total = f" of {total}" if total else ""
    if stage in done:
        return f"done ({plural(max(epochs), 'epoch')})" if epochs else "done"
    if epochs:
        return f"epoch {max(epochs)}{of_total} finished"
    return "not started"


def labels_line(description):
    """`attribute`: `0: name`, ... (the values `--label` and the Translate tab take)."""
    names = description["label_names"]
    values = (", ".join(f"{value}: {name}" for value, name in enumerate(names)) if names
              else f"0..{description['n_labels'] - 1}" if isinstance(description["n_labels"], int) else "unknown")
    return f"labels ({description['labeled_attribute']}): {values}"


def model_overview(base_dir, model_name, presets):
    description = describe_model(base_dir, model_name, presets)
    model_dir = Path(description["directory"])
    config = description["config"]
    records = read_metrics(model_dir / "metrics.jsonl")
    curves = loss_curves(records)
    done = completed_stages(model_dir)
    stages = [(stage, stage_status(config, stage, done, curves)) for stage in STAGE_CONFIG_KEYS[arch_of(config)]]
    return Overview(model_name, config, description["set_values"], stages, curves, latest_samples(model_dir),
                    training_process(model_dir), labels_line(description))


def overview_signature(base_dir, model_name):
    """What changes while a model trains; the page redraws the Model tab only when it does."""
    try:
        model_dir = BaseDir(base_dir).model_dir(model_name)
    except UserError:
        return None
    signature = []
    for path in [model_dir / "config.json", model_dir / "metrics.jsonl", lock_path(model_dir),
                 *(weights_path(model_dir, stage) for stage in STAGES),
                 *(checkpoint_path(model_dir, stage) for stage in STAGES)]:
        try:
            stat = path.stat()
            signature.append((path.name, stat.st_mtime_ns, stat.st_size))
        except FileNotFoundError:
            signature.append((path.name, None))
    return tuple(signature)


def overview_markdown(overview):
    config = overview.config
    data = config.get("data", {})
    lines = [f"**{overview.name}**: {arch_of(config)}, preset `{config.get('config_name')}`, seed "
             f"{config.get('seed')}, trained on `{data.get('name')}` ({data.get('n_images')} images of "
             f"{'x'.join(str(side) for side in data.get('img_shape', []))})"]
    if overview.differences is None:
        lines.append("- config: no preset of that name; the full config is below")
    elif overview.differences:
        lines.append("- `--set` values (keys differing from the preset): "
                     + ", ".join(f"`{item}`" for item in overview.differences))
    else:
        lines.append("- config: the preset unchanged")
    if overview.labels:
        lines.append(f"- {overview.labels}")
    for stage, status in overview.stages:
        lines.append(f"- {STAGE_TITLES[stage]}: {status}")
    if overview.training:
        lines.append(f"- a training run holds the model's lock (process {overview.training})")
    return "\n".join(lines)


# -- the page --------------------------------------------------------------------------------------------


def import_gradio():
    """Gradio, with its telemetry and update checks off: the page works on a machine with no network."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import gradio
    except ImportError:
        raise UserError("serve needs the web extra: pip install -e .[web]") from None
    return gradio


def file_stem(path):
    """An upload's name, shortened and made safe to name the results after it."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem)[:60] or "image"


class ResultFiles:
    """The PNG files the page hands to Gradio, in folders named by their content and written atomically.

    Gradio would write images given as arrays into its cache in place, so two browsers getting the same
    picture at once could read a half-written file; it copies a file given by path atomically instead.
    The bytes are `manipulate`'s PNG encoding.
    """

    def __init__(self, root):
        self.root = Path(root)

    def image(self, image, name):
        return None if image is None else self.file(encode_png(image), name)

    def file(self, data, name):
        path = self.root / hashlib.sha256(data).hexdigest()[:24] / name
        if not path.is_file():
            atomic_write_bytes(path, data)
        return str(path)


def build_page(base_dir, presets, results_dir, device="cpu", model_name=None):
    """The Gradio Blocks of the page; `presets` maps preset names to configs (for the `--set` values),
    `results_dir` is a temporary folder for the PNG files the page shows."""
    gr = import_gradio()
    results = ResultFiles(results_dir)
    import pandas  # a dependency of Gradio's plots
    models = ModelCache(base_dir, device)
    base_label = str(Path(base_dir).resolve())

    def model_info(name):
        """Choices for the label list, a line on the model (or an error line) and the alignment checkbox:
        shown for a face model, ticked where the faces extra is installed."""
        if not name:
            return gr.update(choices=[], value=None), "", gr.update(visible=False, value=False)
        try:
            model = models.get(name)
            model.require_encoders()
        except UserError as error:
            return gr.update(choices=[], value=None), f"error: {error}", gr.update(visible=False, value=False)
        names = label_names(base_dir, model.config, model.n_labels)
        choices = label_choices(names, model.n_labels)
        stage = STAGE_TITLES[model.stage]
        text = (f"{arch_of(model.config)} model, {stage}; {model.n_labels} label values; images "
                f"{'x'.join(str(side) for side in model.img_shape)}")
        face, available = is_face_model(base_dir, model.config), alignment_available()
        if face:
            text += ("; a face model: uploads are aligned as FFHQ's faces were" if available else
                     '; a face model: align uploads as its faces were with pip install -e ".[faces]"')
        return gr.update(choices=choices, value=choices[0][1]), text, gr.update(visible=face, value=face and available)

    def on_target(target):
        by_reference = target == "a reference image"
        return gr.update(visible=not by_reference), gr.update(visible=by_reference)

    def on_image(name, image_path, align=False):
        """The upload as the model will see it (aligned where asked), at once, so a wrong file is reported
        before translating."""
        if image_path is None:
            return "", None
        try:
            model = models.get(name)
            picture = fit_image(model_image(image_path, model, align), model.img_shape)
        except UserError as error:
            return f"error: {error}", None
        return (f"{Path(image_path).name!r} as {name} sees it; now translate it",
                results.image(picture, f"{file_stem(image_path)}-as-{name}-sees-it.png"))

    def on_translate(name, image_path, target, label, reference_path, align=False):
        try:
            model = models.get(name)
            image = model_image(image_path, model, align)
            if target == "a reference image":
                reference = model_image(reference_path, model, align, "reference image")
                result = translate(model, image, reference=reference)
                what = f"the label of {Path(reference_path).name!r}"
                target_name = f"as-{file_stem(reference_path)}"
            else:
                label = label_value(label)
                result = translate(model, image, label=label)
                names = label_names(base_dir, model.config, model.n_labels)
                what = f"label {label}" + (f" ({names[label]})" if names else "")
                target_name = f"to-label-{label}"
        except UserError as error:
            return f"error: {error}", None, None, None
        note = "" if result.strip is not None else f" (no strip: more than {MAX_STRIP_LABELS} label values)"
        stem = file_stem(image_path)
        return (f"translated {Path(image_path).name!r} to {what} with {name}{note}",
                results.image(result.model_input, f"{stem}-as-{name}-sees-it.png"),
                results.image(result.translation, f"{stem}-{target_name}.png"),
                results.image(result.strip, f"{stem}-every-label.png"))

    def list_models(translate_value, overview_value):
        usable, every = translatable_models(base_dir), model_names(base_dir)
        note = "" if usable else (f"No model of {base_label} has trained encoders yet: run `python lord.py demo`, "
                                  "or train-encoders on a model, then reload this page.")
        return (gr.update(choices=usable, value=translate_value if translate_value in usable else
                          (usable[0] if usable else None)),
                gr.update(choices=every, value=overview_value if overview_value in every else
                          (every[0] if every else None)),
                note)

    def on_overview(name, last_signature, force=False):
        signature = overview_signature(base_dir, name) if name else None
        if not force and signature == last_signature:
            return [gr.skip()] * (2 + len(STAGES) * (1 + PLOTS_PER_STAGE)) + [last_signature]
        hidden = [gr.update(visible=False)] * (len(STAGES) * (1 + PLOTS_PER_STAGE))
        if not name:
            return ["No model chosen.", None, *hidden, signature]
        try:
            overview = model_overview(base_dir, name, presets)
        except UserError as error:
            return [f"error: {error}", None, *hidden, signature]
        updates = []
        for stage in STAGES:
            if stage in overview.samples:
                path, epoch = overview.samples[stage]
                picture = read_sample_grid(path)
                updates.append(gr.update(value=picture and results.file(picture, f"{name}-{path.name}"),
                                         visible=picture is not None,
                                         label=f"samples, {STAGE_TITLES[stage]}, epoch {epoch}"))
            else:
                updates.append(gr.update(visible=False))
            losses = list(overview.curves.get(stage, {}).items())[:PLOTS_PER_STAGE]
            for loss, points in losses:
                epoch, value = points[-1]
                title = f"stage {STAGES.index(stage) + 1}, {loss}: {value:.4g} at epoch {epoch}"
                updates.append(gr.update(value=pandas.DataFrame(points, columns=["epoch", "value"]), visible=True,
                                         label=title))
            updates += [gr.update(visible=False)] * (PLOTS_PER_STAGE - len(losses))
        return [overview_markdown(overview), json.dumps(overview.config, indent=2), *updates, signature]

    usable, every = translatable_models(base_dir), model_names(base_dir)
    # The lists accept names beyond their choices (models trained after the page was built, scripts calling
    # the API); every handler checks the name it gets.
    with gr.Blocks(title="LORD", analytics_enabled=False, delete_cache=(600, 3600)) as page:
        gr.Markdown(f"## LORD / OverLORD models of `{base_label}`")
        no_models = gr.Markdown(elem_id="no-models")
        with gr.Tabs(selected="model" if model_name is not None and model_name not in usable else "translate"):
            with gr.Tab("Translate", id="translate"):
                with gr.Row():
                    with gr.Column(scale=1):
                        translate_model = gr.Dropdown(usable, value=model_name if model_name in usable else None,
                                                      label="Model", allow_custom_value=True,
                                                      elem_id="translate-model")
                        info = gr.Markdown(elem_id="model-info")
                        image = gr.File(label="Image (any size; its content is kept)", elem_id="image")
                        align = gr.Checkbox(False, label="Align the face (as FFHQ's faces were: eyes and mouth "
                                            "where the model expects them)", visible=False, elem_id="align")
                        target = gr.Radio(["a label value", "a reference image"], value="a label value",
                                          label="Translate to", elem_id="target")
                        label = gr.Dropdown([], label="Label value", allow_custom_value=True, elem_id="label")
                        reference = gr.File(label="Reference image (gives the label)", visible=False,
                                            elem_id="reference")
                        run = gr.Button("Translate", variant="primary", elem_id="translate")
                        status = gr.Markdown(elem_id="status")
                    with gr.Column(scale=2):
                        with gr.Row():
                            model_input = gr.Image(label="Input as the model sees it", format="png", interactive=False,
                                                   height=IMAGE_HEIGHT, buttons=["download"], elem_id="model-input",
                                                   elem_classes="pixels")
                            translation = gr.Image(label="Translation", format="png", interactive=False,
                                                   height=IMAGE_HEIGHT, buttons=["download"], elem_id="translation",
                                                   elem_classes="pixels")
                        strip = gr.Image(label="Every label value (first: the input)", format="png", interactive=False,
                                         height=STRIP_HEIGHT, buttons=["download"], elem_id="strip",
                                         elem_classes="pixels")
            with gr.Tab("Model", id="model"):
                overview_model = gr.Dropdown(every, value=model_name if model_name in every else None,
                                             label="Model (trained or in training)", allow_custom_value=True,
                                             elem_id="overview-model")
                summary = gr.Markdown(elem_id="overview")
                stage_outputs = []
                for stage in STAGES:
                    with gr.Row():
                        stage_outputs.append(gr.Image(visible=False, interactive=False, format="png",
                                                      buttons=["download"], height=IMAGE_HEIGHT, scale=1,
                                                      elem_id=f"samples-{stage}", elem_classes="pixels"))
                        with gr.Column(scale=2):
                            for first in range(0, PLOTS_PER_STAGE, PLOTS_PER_ROW):
                                with gr.Row():
                                    stage_outputs += [
                                        gr.LinePlot(x="epoch", y="value", visible=False, height=PLOT_HEIGHT,
                                                    show_label=True, elem_id=f"losses-{stage}-{index}")
                                        for index in range(first, first + PLOTS_PER_ROW)]
                with gr.Accordion("config.json", open=False):
                    config_text = gr.Code(language="json")
                signature = gr.State(None)
                timer = gr.Timer(REFRESH_SECONDS)

        overview_outputs = [summary, config_text, *stage_outputs, signature]
        translate_model.change(model_info, translate_model, [label, info, align])
        image.change(on_image, [translate_model, image, align], [status, model_input])
        align.change(on_image, [translate_model, image, align], [status, model_input])
        target.change(on_target, target, [label, reference])
        run.click(on_translate, [translate_model, image, target, label, reference, align],
                  [status, model_input, translation, strip], api_name="translate")
        overview_model.change(lambda name: on_overview(name, None, force=True), overview_model, overview_outputs)
        timer.tick(on_overview, [overview_model, signature], overview_outputs, show_progress="hidden")
        page.load(list_models, [translate_model, overview_model], [translate_model, overview_model, no_models]).then(
            model_info, translate_model, [label, info, align]).then(
            lambda name: on_overview(name, None, force=True), overview_model, overview_outputs)
    return page


def is_loopback(host):
    """Whether `host` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_auth(text, origin="--auth"):
    """(user, password) of `USER:PASSWORD`."""
    user, colon, password = text.strip("\r\n").partition(":")
    if not colon or not user or not password or "\n" in password:
        raise UserError(f"{origin}: expected USER:PASSWORD (both not empty)")
    return user, password


def read_auth_file(path):
    """(user, password) from a file holding one USER:PASSWORD line (kept off the command line, where every
    user of the machine can read it)."""
    with open_regular_file(path, "--auth-file", 4096) as file:
        data = read_bounded(file, 4096, path, "--auth-file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"--auth-file {path}: not a text file") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise UserError(f"--auth-file {path}: expected one line USER:PASSWORD")
    return parse_auth(lines[0], f"--auth-file {path}")


def serve(base_dir, model_name=None, host="127.0.0.1", port=7860, device="auto", presets=None, quiet=False,
          auth=None):
    """Serve the page until Ctrl-C; `auth` is a (user, password) every client must give, or None."""
    from lord.training.data import resolve_device

    if not Path(base_dir).is_dir():
        raise UserError(f"no base directory {base_dir}")
    if model_name is not None:
        BaseDir(base_dir).existing_model_dir(model_name)
    if not is_loopback(host):
        print(f"warning: serving on {host}, not only this machine: "
              + ("every client must log in with --auth's user and password (sent unencrypted over http)"
                 if auth else "anyone who can reach this address can use the page; give --auth or --auth-file "
                 "to require a password"), file=sys.stderr, flush=True)
    device = resolve_device(device)
    with tempfile.TemporaryDirectory(prefix="lord-serve-") as results_dir:
        page = build_page(base_dir, presets or {}, results_dir, device=device, model_name=model_name)
        uvicorn_errors = logging.getLogger("uvicorn.error")
        silence = logging.Filter("silence everything")  # a failed bind is reported below, in one line
        uvicorn_errors.addFilter(silence)
        try:
            _, local_url, _ = page.launch(
                server_name=host, server_port=port, prevent_thread_lock=True, quiet=True, share=False,
                max_file_size=MAX_UPLOAD_BYTES, css=PAGE_CSS, run_history=False, allowed_paths=[results_dir],
                auth=auth)
        except OSError:
            raise UserError(f"cannot serve on {host}:{port}: the port is taken or {host} is not an address of this "
                            "machine (choose another --port or --host)") from None
        finally:
            uvicorn_errors.removeFilter(silence)
        print(f"serving the models of {base_dir} at {local_url} (Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            page.close()
    if not quiet:
        print("stopped")
