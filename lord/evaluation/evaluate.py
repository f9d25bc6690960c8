"""`lord.py evaluate`: every metric of the papers' tables for one model, stage and data set.

The model's codes are computed once for every image of the data: the learned embeddings when the
data is the one stage 1 was trained on and the stage is `latent`, else the encoders' codes. For
OverLORD, "content" is the uncorrelated code and "class" the label code; a translation takes the
label and correlated code of B. Everything after that works on image indices: a translation is
G(content of A, class of B), generated in batches on the device.

The result is one JSON object of fixed shape (see `evaluate`); a family that does not apply to the
data or the model is null. Metrics that need published weights (perceptual, LPIPS, both FIDs) are
null with a warning when the weights cannot be had, never computed with random weights.
"""

import contextlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

import lord
from lord.assets import BaseDir, atomic_write_json
from lord.data import store
from lord.errors import UserError
from lord.evaluation import frechet, probes
from lord.evaluation.classifier import train_classifier
from lord.evaluation.distances import (
    NAMES as DISTANCE_NAMES, ImageDistances, RunningMeans, load_lpips_or_none, load_perceptual, usable_on, warn,
)
from lord.evaluation.export import TranslationExport, check_export_dir
from lord.evaluation.face import FaceMetrics, is_face_data, load_face_networks
from lord.evaluation.pairs import random_of_same_class, sample_pairs
from lord.model import STAGES, arch_of, completed_stages, load_stage, read_config
from lord.training.common import is_training_data
from lord.training.data import DeviceImages, resolve_device
from lord.visualize import to_uint8

DEFAULT_N_PAIRS = 1000
MAX_RECONSTRUCTIONS = 10000
MAX_RESULT_BYTES = 1 << 20  # an evaluation result is a few kilobytes
DIVERSITY_REFERENCES = 10
BATCH_PIXELS = 2**22
FAMILIES = ("class_from_content", "content_from_class", "content_transfer", "reconstruction", "translation",
            "fid", "fid_paper", "lpips_diversity", "face")


def batch_size_for(img_shape):
    """Images per generation batch: bounded in pixels, so large images take smaller batches."""
    height, width = img_shape[:2]
    return int(max(8, min(512, BATCH_PIXELS // (height * width))))


@dataclass
class Codes:
    """Every image's codes and the generator that turns (content, reference) into images.

    content: LORD's content code, OverLORD's uncorrelated code; class_code: LORD's class code,
    OverLORD's label code; reference: what an image gives to a translation as its class side (the
    class code; OverLORD's label code with the correlated code, if any).
    """

    content: torch.Tensor
    class_code: torch.Tensor
    reference: torch.Tensor
    generate: Callable
    source: str


def chunks(count, size):
    return [slice(start, min(start + size, count)) for start in range(0, count, size)]


@torch.no_grad()
def encode_all(encode, images, batch_size, quiet):
    """Concatenated outputs of `encode(batch of images, their indices)` (a tuple of tensors or Nones)
    over the whole set."""
    outputs = []
    indices = torch.arange(len(images), device=images.device)
    for rows in tqdm(indices.split(batch_size), desc="encode", unit="batch", disable=quiet, leave=False,
                     dynamic_ncols=True):
        outputs.append(encode(images.batch(rows), rows))
    return [None if parts[0] is None else torch.cat(parts) for parts in zip(*outputs)]


def lord_codes(model_dir, config, stage, dataset, images, use_embeddings, batch_size, quiet):
    device = images.device
    if use_embeddings:
        latent = load_stage(model_dir, "latent", config).to(device)
        classes = torch.as_tensor(dataset.classes, device=device)
        content = latent.content_embedding.weight.detach()
        class_code = latent.class_embedding.weight.detach()[classes]
        generator = latent.generator
    else:
        amortized = load_stage(model_dir, stage, config).to(device)
        content, class_code = encode_all(
            lambda batch, rows: (amortized.content_encoder(batch), amortized.class_encoder(batch)),
            images, batch_size, quiet,
        )
        generator = amortized.generator
    return Codes(content, class_code, class_code, generator, "embeddings" if use_embeddings else "encoders")


def overlord_codes(model_dir, config, stage, dataset, images, use_embeddings, batch_size, quiet):
    from lord.model import correlated_input, inference_generator, reference_code, translation_code
    from lord.training.correlation import device_masks

    device = images.device
    if use_embeddings:
        latent = load_stage(model_dir, "latent", config).to(device)
        labels = torch.as_tensor(dataset.label(config["labeled_attribute"])[0], device=device)
        label_code = latent.label_embedding.weight.detach()[labels]
        uncorrelated = latent.uncorrelated_embedding.weight.detach()
        correlated = None
        if latent.correlated_encoder is not None:
            masks = None
            if config["correlation"] == "localized":
                if "masks" in dataset.extras:
                    masks = device_masks(dataset.extras["masks"], device, channels_last=False)
                else:
                    warn("the data has no masks: stage 1's correlated encoder sees whole images instead of their "
                         "masked region")
            (correlated,) = encode_all(
                lambda batch, rows: (latent.correlated_encoder(
                    correlated_input(batch, None if masks is None else masks.batch(rows))),),
                images, batch_size, quiet,
            )
        generator = latent.generator
    else:
        module = load_stage(model_dir, stage, config).to(device)
        label_code, correlated, uncorrelated = encode_all(
            lambda batch, rows: module.encode(batch), images, batch_size, quiet
        )
        generator = inference_generator(module)

    def generate(content, reference):
        return generator(translation_code(content, reference))

    source = "embeddings" if use_embeddings else "encoders"
    return Codes(uncorrelated, label_code, reference_code(label_code, correlated), generate, source)


# -- metric families ----------------------------------------------------------------------------------


def leakage(codes, labels, seed, device):
    """Probe accuracies of predicting `labels` from `codes`, beside the chance level."""
    result = {kind: probes.probe_accuracy(codes, labels, kind, seed=seed, device=device) for kind in probes.KINDS}
    result["chance"] = probes.chance_level(labels, seed=seed)
    return result


@torch.no_grad()
def content_transfer(translate, load_images, classes, contents, n_pairs, seed, distances, batch_size):
    """Distances between translations and their ground truth, for up to `n_pairs` seeded pairs; beside
    them the same distances for A unchanged and for a random image of B's class. None without pairs.

    `translate(a, b)` and `load_images(indices)` take int64 index arrays and return float images in
    [0, 1], (N, C, H, W).
    """
    source, reference, target = sample_pairs(classes, n_pairs, seed, contents)
    if len(source) == 0:
        return None
    random_same_class = random_of_same_class(classes, target, seed + 1)
    means = {name: RunningMeans() for name in ("translation", "baseline_unchanged", "baseline_random_same_class")}
    for rows in chunks(len(source), batch_size):
        truth = load_images(target[rows])
        means["translation"].add(distances.per_image(translate(source[rows], reference[rows]), truth))
        means["baseline_unchanged"].add(distances.per_image(load_images(source[rows]), truth))
        means["baseline_random_same_class"].add(distances.per_image(load_images(random_same_class[rows]), truth))
    result = {name: means["translation"].means()[name] for name in DISTANCE_NAMES}
    for baseline in ("baseline_unchanged", "baseline_random_same_class"):
        result[baseline] = {name: means[baseline].means()[name] for name in DISTANCE_NAMES}
    result["n_pairs"] = len(source)
    return result


@torch.no_grad()
def reconstruction(reconstruct, load_images, n_images, seed, distances, batch_size):
    """Perceptual distance and MSE between images and their reconstructions (up to
    MAX_RECONSTRUCTIONS seeded images)."""
    chosen = np.arange(n_images)
    if n_images > MAX_RECONSTRUCTIONS:
        chosen = np.sort(np.random.default_rng(seed).choice(n_images, MAX_RECONSTRUCTIONS, replace=False))
    means = RunningMeans()
    for rows in chunks(len(chosen), batch_size):
        means.add(distances.per_image(reconstruct(chosen[rows]), load_images(chosen[rows])))
    values = means.means()
    return {"perceptual": values["perceptual"], "mse": values["mse"]}


@torch.no_grad()
def translation_accuracy(translate, classifier, classes, source, reference, batch_size):
    """(share of translations classified as B's class, share classified as A's class)."""
    classes = np.asarray(classes)
    predicted = torch.cat([
        classifier.predict(translate(source[rows], reference[rows])) for rows in chunks(len(source), batch_size)
    ]).cpu().numpy()
    return float(np.mean(predicted == classes[reference])), float(np.mean(predicted == classes[source]))


@torch.no_grad()
def frechet_inception_distance(translate, load_images, source, reference, inception, batch_size):
    """FID between the translations G(content of A, class of B) and the real images B, which share
    their target labels."""
    generated, real = [], []
    for rows in chunks(len(source), batch_size):
        generated.append(inception(translate(source[rows], reference[rows])).double().cpu().numpy())
        real.append(inception(load_images(reference[rows])).double().cpu().numpy())
    return frechet.frechet_distance(*frechet.statistics(np.concatenate(generated)),
                                    *frechet.statistics(np.concatenate(real)))


def diversity_references(labels, target_rows, n_references, seed):
    """(len(target_rows), n_references) seeded random images, row i drawn among the images whose
    label is that of target_rows[i]."""
    labels = np.asarray(labels, dtype=np.int64)
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], labels[target_rows], side="left")
    counts = np.searchsorted(labels[order], labels[target_rows], side="right") - starts
    draws = np.random.default_rng(seed).random((len(target_rows), n_references))
    return order[starts[:, None] + np.floor(draws * counts[:, None]).astype(np.int64)]


@torch.no_grad()
def lpips_diversity(translate, labels, source, target_rows, n_references, seed, lpips, batch_size, record=None):
    """Mean pairwise LPIPS between translations of one input to one label with `n_references`
    different random references of that label, averaged over the inputs.

    `target_rows` are images whose label is the target of each input; the references are drawn
    among the images of that label. `record(inputs, references, translations)`, when given, sees
    every batch of translations ((N, K, C, H, W)); with `lpips` None nothing is scored (None).
    """
    references = diversity_references(labels, target_rows, n_references, seed)
    first, second = np.triu_indices(n_references, k=1)
    total, count = 0.0, 0
    inputs_per_batch = max(1, batch_size // n_references)
    for rows in chunks(len(source), inputs_per_batch):
        inputs = np.repeat(source[rows], n_references)
        outputs = translate(inputs, references[rows].reshape(-1))
        outputs = outputs.reshape(-1, n_references, *outputs.shape[1:])
        if record is not None:
            record(source[rows], references[rows], outputs)
        if lpips is None:
            continue
        a = outputs[:, first].reshape(-1, *outputs.shape[2:])
        b = outputs[:, second].reshape(-1, *outputs.shape[2:])
        for pair_rows in chunks(len(a), batch_size):
            distances = lpips(a[pair_rows], b[pair_rows])
            total += float(distances.double().sum())
            count += len(distances)
    return total / count if count else None


# -- the command ---------------------------------------------------------------------------------------


def resolve_stage(model_dir, config, stage):
    done = completed_stages(model_dir)
    if not done:
        raise UserError(f"model {model_dir.name!r} has no completed stage yet: run train first")
    if stage is None:
        return done[-1]
    if stage not in STAGES:
        raise UserError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    if arch_of(config) == "lord" and stage == "synthesis":
        raise UserError("LORD models have no synthesis stage; evaluate stage latent or amortized")
    if stage not in done:
        raise UserError(f"model {model_dir.name!r} has no completed {stage} stage (completed: {', '.join(done)})")
    return stage


def default_output(base, model_name, data_name, stage):
    return base.model_dir(model_name) / f"evaluation-{data_name}-{stage}.json"


def open_inputs(base, model_name, data_name, stage):
    """(model dir, config, stage, dataset) after every check a user's mistake could fail."""
    model_dir = base.existing_model_dir(model_name)
    config = read_config(model_dir)
    stage = resolve_stage(model_dir, config, stage)
    dataset = store.load(base.existing_data_path(data_name))
    trained_shape = tuple(config["data"]["img_shape"])
    if dataset.img_shape != trained_shape:
        raise UserError(f"data {data_name!r} has images of shape {dataset.img_shape} (H, W, C), but model "
                        f"{model_name!r} was trained on {trained_shape}")
    if stage == "latent" and not is_training_data(config["data"], dataset):
        raise UserError(f"stage latent has no encoders, so it can only be evaluated on the data it was trained on "
                        f"({config['data']['name']!r}); run train-encoders to evaluate {data_name!r}")
    if arch_of(config) == "overlord":
        dataset.label(config["labeled_attribute"])
    return model_dir, config, stage, dataset


def is_own_result(path, model_name, data_name, stage):
    """Whether `path` holds an evaluation result this toolkit wrote for the same model, data and stage
    (a re-run replaces it); any other file is someone's work that only --overwrite may replace."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_RESULT_BYTES:
            return False
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(result, dict) and "version" in result and "reconstruction" in result
            and (result.get("model"), result.get("data"), result.get("stage")) == (model_name, data_name, stage))


def check_output(output, model_name, data_name, stage, overwrite):
    if output.is_dir():
        raise UserError(f"--output must be a file path, {output} is a directory")
    if output.exists() and not overwrite and not is_own_result(output, model_name, data_name, stage):
        raise UserError(f"{output} exists and is not an evaluation of model {model_name!r} on {data_name!r}, stage "
                        f"{stage}: use --overwrite to replace it, or another --output")


def evaluate(base_dir, model_name, data_name, stage=None, output=None, n_pairs=DEFAULT_N_PAIRS, seed=0,
             device="auto", quiet=False, export=None, face=False, weighted_distances=True, overwrite=False):
    """Evaluate a model's `stage` (default: its latest completed stage) on preprocessed data.

    Returns and writes (atomically, to `output` or to the model directory's
    `evaluation-<data>-<stage>.json`) a dict with the keys `model`, `data`, `stage`, `seed`, `version`
    and the families in FAMILIES, each null where it does not apply:
    class_from_content / content_from_class: {logistic, mlp, chance} (probe accuracies);
    content_transfer: {perceptual, mse, ssim, lpips, baseline_unchanged: {...}, baseline_random_same_class:
    {...}, n_pairs}; reconstruction: {perceptual, mse}; translation: {target_class_accuracy,
    source_class_accuracy, classifier_accuracy}; fid, fid_paper and lpips_diversity (OverLORD): numbers;
    face (face data, or any data with `face`): {landmarks, identity, head_pose: {yaw, pitch, roll},
    n_failed} (lord.evaluation.face).
    With `export` (a directory), the scored translations are also written there as PNG files with an
    index (see lord.evaluation.export).
    Without `quiet`, prints progress on stderr and a summary on stdout; warnings are always printed.
    An existing `output` is replaced only when it is an earlier result of the same model, data and
    stage (`is_own_result`) or with `overwrite`.
    `weighted_distances=False` leaves the distances that need published weights (perceptual, LPIPS)
    null without looking for or downloading their files.
    """
    started = time.perf_counter()
    if n_pairs < 1:
        raise UserError(f"--n-pairs must be at least 1, got {n_pairs}")
    base = BaseDir(base_dir)
    model_dir, config, stage, dataset = open_inputs(base, model_name, data_name, stage)
    output = Path(output) if output is not None else default_output(base, model_name, data_name, stage)
    check_output(output, model_name, data_name, stage, overwrite)
    overlord = arch_of(config) == "overlord"
    labels = dataset.label(config["labeled_attribute"])[0] if overlord else dataset.classes
    export_dir = None if export is None else check_export_dir(export, len(np.unique(labels)))

    device = resolve_device(device)
    batch_size = batch_size_for(dataset.img_shape)
    images = DeviceImages(dataset.imgs, device, channels_last=False)
    build = overlord_codes if overlord else lord_codes
    codes = build(model_dir, config, stage, dataset, images, stage == "latent", batch_size, quiet)
    distances = ImageDistances()
    if weighted_distances:
        distances = ImageDistances(
            usable_on(load_perceptual(config.get("perceptual_loss"), device), "the perceptual distance",
                      dataset.img_shape, device),
            usable_on(load_lpips_or_none(device), "LPIPS", dataset.img_shape, device),
        )
    result = {"model": model_name, "data": data_name, "stage": stage, "seed": seed, "version": lord.__version__}
    with contextlib.ExitStack() as stack:
        exporter = None if export_dir is None else stack.enter_context(TranslationExport(export_dir, labels))
        result.update(metric_families(codes, images, labels, dataset.contents, overlord, distances, n_pairs, seed,
                                      batch_size, quiet, export=exporter, face=face or is_face_data(dataset)))
        atomic_write_json(output, result)
        if exporter is not None:
            attribute = config["labeled_attribute"] if overlord else "classes"
            try:
                exporter.commit(dict(result, evaluation=str(output), labeled_attribute=attribute,
                                     label_names=label_names(dataset, attribute)))
            except UserError as error:
                raise UserError(f"{error} (the evaluation result was written to {output})") from None
    if not quiet:
        print(summary(result, codes.source, len(dataset), len(np.unique(labels)), overlord,
                      time.perf_counter() - started))
        if export_dir is not None:
            print(f"exported the translations to {export_dir}")
        print(f"wrote {output}")
    return result


def label_names(dataset, attribute):
    """The names of the label values where the data has them (`class_names`, `<label>_names`), else None."""
    names = dataset.extras.get("class_names" if attribute == "classes" else f"{attribute}_names")
    return None if names is None else [str(name) for name in np.asarray(names).tolist()]


@torch.no_grad()
def each_translated_batch(translate, load_images, source, reference, batch_size, consumers):
    """One pass over the pairs (A, B): every consumer's `add_pairs(a, b, contents, styles, translations)`
    sees each batch as uint8 (N, H, W, C) images, rounded as the toolkit's PNG files are."""
    for rows in chunks(len(source), batch_size):
        a, b = source[rows], reference[rows]
        translations = to_uint8(translate(a, b), channels_first=True)
        contents = to_uint8(load_images(a), channels_first=True)
        styles = to_uint8(load_images(b), channels_first=True)
        for consumer in consumers:
            consumer.add_pairs(a, b, contents, styles, translations)


def metric_families(codes, images, labels, contents, overlord, distances, n_pairs, seed, batch_size, quiet,
                    export=None, face=False):
    """Every family of FAMILIES, None where it does not apply (`face` says whether the face metrics
    do); `export` (a TranslationExport) receives the translated pairs and diversity sets."""
    device = images.device

    def load_images(indices):
        return images.batch(torch.as_tensor(indices, device=device))

    @torch.no_grad()
    def translate(content_rows, class_rows):
        content_rows, class_rows = (torch.as_tensor(rows, device=device) for rows in (content_rows, class_rows))
        return codes.generate(codes.content[content_rows], codes.reference[class_rows]).float().clamp(0, 1)

    def progress(message):
        if not quiet:
            print(f"{message}...", file=sys.stderr, flush=True)

    families = dict.fromkeys(FAMILIES)
    several_labels = len(np.unique(labels)) > 1
    if several_labels:
        progress("leakage probes")
        families["class_from_content"] = leakage(codes.content, labels, seed, device)
    if np.any(contents != 0):
        families["content_from_class"] = leakage(codes.class_code, contents, seed, device)
        progress("content transfer")
        families["content_transfer"] = content_transfer(
            translate, load_images, labels, contents, n_pairs, seed, distances, batch_size
        )
        if families["content_transfer"] is None:
            warn("content transfer is left null: no pair of images of different classes has its ground truth "
                 "(B's class with A's content id) in the data")
    progress("reconstruction")
    families["reconstruction"] = reconstruction(
        lambda rows: translate(rows, rows), load_images, len(images), seed, distances, batch_size
    )
    if not several_labels:
        return families
    progress("translation accuracy")
    classifier, classifier_accuracy = train_classifier(load_images, labels, seed, device, quiet)
    source, reference = sample_pairs(labels, n_pairs, seed + 2)
    target_accuracy, source_accuracy = translation_accuracy(translate, classifier, labels, source, reference,
                                                            batch_size)
    families["translation"] = {"target_class_accuracy": target_accuracy, "source_class_accuracy": source_accuracy,
                               "classifier_accuracy": classifier_accuracy}
    face_metrics = None
    if face:
        networks = load_face_networks(device)
        face_metrics = None if networks is None else FaceMetrics(networks)
    consumers = {"face metrics": face_metrics, "export": export}
    consumers = {name: consumer for name, consumer in consumers.items() if consumer is not None}
    if consumers:
        progress(" and ".join(consumers))
        each_translated_batch(translate, load_images, source, reference, batch_size, list(consumers.values()))
    if face_metrics is not None:
        families["face"] = face_metrics.result()
    if overlord:
        families.update(overlord_families(translate, load_images, labels, source, reference, distances.lpips, seed,
                                          device, batch_size, progress, export))
    return families


def overlord_families(translate, load_images, labels, source, reference, lpips, seed, device, batch_size, progress,
                      export=None):
    """{fid, fid_paper, lpips_diversity} of an OverLORD model; each None with a warning without its
    weights. The diversity translations go to `export` too, scored or not."""
    from lord.evaluation.fid_paper import load_paper_inception
    from lord.evaluation.inception import load_inception

    families = {}
    for name, load_network in (("fid", load_inception), ("fid_paper", load_paper_inception)):
        families[name] = None
        try:
            network = load_network(device=device)
        except UserError as error:
            warn(f"{name} is left null: {error}")
            continue
        if len(source) < 2:
            warn(f"{name} is left null: it needs two translation pairs or more")
            continue
        progress(name.replace("_", " "))
        families[name] = frechet_inception_distance(translate, load_images, source, reference, network,
                                                    min(batch_size, 64))
    families["lpips_diversity"] = None
    if lpips is None:
        warn("lpips_diversity is left null: LPIPS is unavailable (see the LPIPS warning above)")
    if lpips is not None or export is not None:
        progress("lpips diversity" if lpips is not None else "diversity translations for the export")
        n_inputs = max(1, len(source) // DIVERSITY_REFERENCES)

        def record(inputs, references, outputs):
            flat = to_uint8(outputs.flatten(0, 1), channels_first=True)
            export.add_diversity(inputs, references, to_uint8(load_images(inputs), channels_first=True),
                                 flat.reshape(*references.shape, *flat.shape[1:]))

        families["lpips_diversity"] = lpips_diversity(translate, labels, source[:n_inputs], reference[:n_inputs],
                                                      DIVERSITY_REFERENCES, seed + 3, lpips, batch_size,
                                                      record=None if export is None else record)
    return families


# -- the printed summary --------------------------------------------------------------------------------


def number(value):
    return "-" if value is None else f"{value:.4g}"


def table(rows):
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  " + "  ".join(cell.ljust(width) if column == 0 else cell.rjust(width)
                         for column, (cell, width) in enumerate(zip(row, widths)))
        for row in rows
    )


def summary(result, code_source, n_images, n_labels, overlord, seconds):
    """The human-readable form of an evaluation result, each metric with its direction."""
    lines = [
        f"model {result['model']}, stage {result['stage']} (codes from the {code_source}), data {result['data']} "
        f"({n_images} images, {n_labels} classes), seed {result['seed']}, {seconds:.0f} s",
        "",
        "leakage probes: held-out accuracy (lower is better; chance is ideal)",
    ]
    probe_rows = [["", "logistic", "mlp", "chance"]]
    for family, name in (("class_from_content", "class from content"), ("content_from_class", "content from class")):
        values = result[family] or dict.fromkeys(("logistic", "mlp", "chance"))
        probe_rows.append([name] + [number(values[key]) for key in ("logistic", "mlp", "chance")])
    lines += [table(probe_rows), ""]
    transfer = result["content_transfer"]
    if transfer is None:
        lines.append("content transfer: - (needs ground-truth content ids and pairs that have their ground truth)")
    else:
        lines.append(f"content transfer against the ground truth, {transfer['n_pairs']} pairs")
        transfer_rows = [["", "perceptual (lower)", "mse (lower)", "ssim (higher)", "lpips (lower)"]]
        for name, values in (("G(content A, class B)", transfer),
                             ("reference: A unchanged", transfer["baseline_unchanged"]),
                             ("reference: random image of B's class", transfer["baseline_random_same_class"])):
            transfer_rows.append([name] + [number(values[key]) for key in DISTANCE_NAMES])
        lines.append(table(transfer_rows))
    lines.append("")
    recon = result["reconstruction"]
    lines.append(f"reconstruction (lower is better): perceptual {number(recon['perceptual'])}, "
                 f"mse {number(recon['mse'])}")
    translation = result["translation"]
    if translation is None:
        lines.append("translation accuracy: - (needs two classes or more)")
    else:
        lines.append(
            f"translation accuracy: classified as B's class {number(translation['target_class_accuracy'])} "
            f"(higher is better), as A's class {number(translation['source_class_accuracy'])} (lower is better); "
            f"the classifier on held-out real images {number(translation['classifier_accuracy'])}"
        )
    face = result["face"]
    if face is not None:
        poses = face["head_pose"] or dict.fromkeys(("yaw", "pitch", "roll"))
        lines.append(f"face metrics (lower is better): landmarks {number(face['landmarks'])}, identity "
                     f"{number(face['identity'])}, head pose yaw {number(poses['yaw'])} pitch "
                     f"{number(poses['pitch'])} roll {number(poses['roll'])}; {face['n_failed']} pairs without a face")
    if overlord:
        lines.append(f"fid {number(result['fid'])}, fid (the paper's protocol) {number(result['fid_paper'])} "
                     f"(lower is better), lpips diversity {number(result['lpips_diversity'])} (higher is more diverse)")
    return "\n".join(lines)
