"""The training stages as functions of a base directory: what `train` and `train-encoders` run.

Each function validates everything it can (names, data, config, weights) before it touches the
model directory, so a mistake leaves no trace; then it locks the model directory for the run.
"""

import contextlib
import random
import shutil

import numpy as np
import torch

from lord import configuration
from lord.assets import BaseDir, ModelLock, atomic_write_json
from lord.data import store
from lord.errors import UserError
from lord.model import LatentModel, checkpoint_path, load_state_checked, load_tensors, read_config, weights_path
from lord.training.common import dataset_fingerprint
from lord.training.data import resolve_device
from lord.training.loop import Run

__all__ = ["train", "train_encoders", "seed_everything"]


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def data_block(data_name, dataset):
    return {
        "name": data_name,
        "img_shape": list(dataset.img_shape),
        "n_classes": int(dataset.n_classes),
        "n_images": len(dataset),
        "fingerprint": dataset_fingerprint(dataset),
    }


def check_same_data(config, data_name, dataset, what):
    """Later stages index the stage-1 codes by image position: the data must be the very same."""
    trained = config["data"]
    if trained["fingerprint"] != dataset_fingerprint(dataset) or trained["n_images"] != len(dataset):
        raise UserError(
            f"{what} needs the data stage 1 was trained on ({trained['name']!r}, {trained['n_images']} images); "
            f"{data_name!r} is different"
        )


def check_batch_size(batch_size, dataset, key):
    if batch_size > len(dataset):
        raise UserError(f"{key}={batch_size} is larger than the {len(dataset)} training images")


def _model_dir_in_use(model_dir):
    return model_dir.exists() and any(model_dir.iterdir())


def _clear_model(base, model_name, model_dir):
    """--overwrite: remove that one model's directory contents (but our lock) and its TensorBoard logs."""
    for entry in model_dir.iterdir():
        if entry.name == "lock":
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    tensorboard_dir = base.tensorboard_dir(model_name)
    if tensorboard_dir.exists():
        shutil.rmtree(tensorboard_dir)


def train(base_dir, data_name, model_name, config, overrides=(), config_name=None, overwrite=False,
          device="auto", seed=0, quiet=False, resume=False, checkpoint_minutes=10.0):
    """Stage 1: latent optimization. Writes cache/models/<model_name>/ and returns its path."""
    base = BaseDir(base_dir)
    model_dir = base.model_dir(model_name)
    dataset = store.load(base.existing_data_path(data_name))
    if resume:
        if overrides:
            raise UserError("--set cannot be combined with --resume: the run continues with its saved config.json")
        config = read_config(base.existing_model_dir(model_name))
        check_same_data(config, data_name, dataset, "resuming train")
    else:
        if _model_dir_in_use(model_dir) and not overwrite:
            raise UserError(f"model {model_name!r} already exists at {model_dir} (use --overwrite to replace it, "
                            "or --resume to continue it)")
        config = configuration.apply_overrides(config, overrides)
        config["config_name"] = config_name
        config["seed"] = seed
        config["data"] = data_block(data_name, dataset)
    check_batch_size(config["train"]["batch_size"], dataset, "train.batch_size")
    from lord.training.latent import LatentStage as build

    device = resolve_device(device)
    seed_everything(seed)
    stage = build(config, dataset, device, seed=seed)
    with ModelLock(model_dir):
        if not resume:
            _clear_model(base, model_name, model_dir)
            atomic_write_json(model_dir / "config.json", config)
        run = Run(stage, model_dir, base.tensorboard_dir(model_name), seed=seed, quiet=quiet,
                  checkpoint_minutes=checkpoint_minutes, log_every=config["runtime"]["log_every"])
        run.run(resume=resume)
    if not quiet:
        print(f"stage 1 done: {weights_path(model_dir, stage.name)}")
    return model_dir


def load_latent_state(model_dir, config):
    path = weights_path(model_dir, "latent")
    if not path.is_file():
        raise UserError(f"model {model_dir.name!r} has no completed stage 1 ({path} is missing): run train first")
    state = load_tensors(path)
    load_state_checked(LatentModel(config), state, str(path))
    return state


def train_encoders(base_dir, data_name, model_name, overrides=(), overwrite=False, device="auto", seed=0,
                   quiet=False, resume=False, checkpoint_minutes=10.0):
    """Stage 2: amortized encoders. Adds `amortized.pt` to an existing model."""
    base = BaseDir(base_dir)
    model_dir = base.existing_model_dir(model_name)
    dataset = store.load(base.existing_data_path(data_name))
    config = read_config(model_dir)
    check_same_data(config, data_name, dataset, "train-encoders")
    if resume and overrides:
        raise UserError("--set cannot be combined with --resume: the run continues with its saved config.json")
    config = configuration.apply_overrides(config, overrides, allowed_prefixes=("train_encoders.", "runtime."))
    done = weights_path(model_dir, "amortized")
    if not resume and done.exists() and not overwrite:
        raise UserError(f"model {model_name!r} already has trained encoders ({done}); use --overwrite to retrain them")
    check_batch_size(config["train_encoders"]["batch_size"], dataset, "train_encoders.batch_size")
    latent_state = load_latent_state(model_dir, config)
    from lord.training.amortized import AmortizedStage

    device = resolve_device(device)
    seed_everything(seed)
    stage = AmortizedStage(config, dataset, device, latent_state, seed=seed)
    with ModelLock(model_dir):
        if not resume:
            for stale in (done, checkpoint_path(model_dir, stage.name)):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
            atomic_write_json(model_dir / "config.json", config)
        run = Run(stage, model_dir, base.tensorboard_dir(model_name), seed=seed, quiet=quiet,
                  checkpoint_minutes=checkpoint_minutes, log_every=config["runtime"]["log_every"])
        run.run(resume=resume)
    if not quiet:
        print(f"stage 2 done: {done}")
    return model_dir
