"""The training stages as functions of a base directory: what `train`, `train-encoders` and
`train-synthesis` run, for LORD and OverLORD models alike (the config's `arch` decides).

Each function validates everything it can (names, data, config, weights) before it touches the
model directory, so a mistake leaves no trace; then it locks the model, repeats the existence checks
under the lock, and runs. A new model's directory appears complete with its config.json (assembled
beside it, renamed into place, replacing an old model with --overwrite only at that instant); the run
then writes its checkpoints and final weights there, each file atomically, so that an interrupted run
is found by --resume.
"""

import contextlib
import random

import numpy as np
import torch

from lord import configuration
from lord.assets import (
    BaseDir, ModelLock, atomic_write_bytes, atomic_write_json, is_published_model_dir, model_exists,
    remove_leftover_staging, remove_tensorboard, staged_model_dir,
)
from lord.data import store
from lord.errors import UserError
from lord.model import (
    arch_of, checkpoint_path, load_state_checked, load_tensors, read_config, stage_module_class, weights_path,
)
from lord.networks import stylegan
from lord.training.common import dataset_fingerprint, is_training_data
from lord.training.distributed import ELASTIC_MARKER, ElasticAttempt, describe_processes, from_environment
from lord.training.loop import Run

__all__ = ["train", "train_encoders", "train_synthesis", "train_all_stages", "seed_everything"]

# Per architecture, each stage's block in the config.
STAGE_CONFIG_KEYS = {
    "lord": {"latent": "train", "amortized": "train_encoders"},
    "overlord": {"latent": "disentanglement", "amortized": "amortization", "synthesis": "synthesis"},
}
STAGE_NUMBERS = {"latent": 1, "amortized": 2, "synthesis": 3}
COMMANDS = {"latent": "train", "amortized": "train-encoders", "synthesis": "train-synthesis"}
PREVIOUS_STAGE = {"amortized": "latent", "synthesis": "amortized"}
TRAINED_WHAT = {"amortized": "trained encoders", "synthesis": "a trained synthesis stage"}


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def data_block(data_name, dataset, config):
    block = {
        "name": data_name,
        "img_shape": list(dataset.img_shape),
        "n_classes": int(dataset.n_classes),
        "n_images": len(dataset),
        "fingerprint": dataset_fingerprint(dataset),
    }
    if arch_of(config) == "overlord":
        block["n_labels"] = dataset.label(config["labeled_attribute"])[1]
    return block


def check_data_fits(config, data_name, dataset):
    """What a config asks of the data: two labels at least; for OverLORD square power-of-two images,
    its labeled attribute and, for a localized correlation, masks."""
    attribute = config.get("labeled_attribute", "classes")
    labels, _ = dataset.label(attribute)
    if len(np.unique(labels)) < 2:
        raise UserError(f"data {data_name!r} has a single value of {attribute!r}: disentanglement needs two at least")
    if arch_of(config) != "overlord":
        return
    height, width, channels = dataset.img_shape
    try:
        stylegan.check_architecture(height, channels, config["generator"]["channel_base"],
                                    config["generator"]["channel_max"])
    except ValueError as error:
        raise UserError(f"data {data_name!r} does not fit the OverLORD networks: {error}") from None
    if height != width:
        raise UserError(f"OverLORD needs square images; {data_name!r} has {height}x{width}")
    dataset.label(config["labeled_attribute"])
    if config["correlation"] == "localized" and "masks" not in dataset.extras:
        raise UserError(f"correlation 'localized' needs `masks` in the data; {data_name!r} has none")


def stage_key(config, stage_name):
    """The config block of a stage, or a UserError when the model's architecture has no such stage."""
    keys = STAGE_CONFIG_KEYS[arch_of(config)]
    if stage_name not in keys:
        raise UserError(f"{COMMANDS[stage_name]} is for OverLORD models; this model has arch {arch_of(config)!r}")
    return keys[stage_name]


def check_same_data(config, data_name, dataset, what):
    """Later stages index the stage-1 codes by image position: the data must be the very same."""
    trained = config["data"]
    if not is_training_data(trained, dataset):
        name = "the data of the imported model" if trained["name"] is None else repr(trained["name"])
        raise UserError(
            f"{what} needs the data stage 1 was trained on ({name}, {trained['n_images']} images of "
            f"{'x'.join(map(str, trained['img_shape']))}); {data_name!r} is different"
        )


def override_prefixes(config, stage_name):
    """The keys `--set` may change at a stage: any key at stage 1; a later stage, which adds to a trained
    model, only its own block and `runtime`."""
    if stage_name == "latent":
        return None
    return (f"{stage_key(config, stage_name)}.", "runtime.")


def check_batch_size(batch_size, dataset, key):
    if batch_size > len(dataset):
        raise UserError(f"{key}={batch_size} is larger than the {len(dataset)} training images")


def existing_model_message(model_name, model_dir):
    return (f"model {model_name!r} already exists at {model_dir} (use --overwrite to replace it, or --resume to "
            "continue it)")


def existing_stage_message(model_name, stage_name, done):
    return f"model {model_name!r} already has {TRAINED_WHAT[stage_name]} ({done}); use --overwrite to retrain"


def elastic_continuation(model_dir, stage_name, resume, overwrite, overrides):
    """(resume, overwrite, overrides) for this process: a torchrun restart of the job that was training
    `model_dir` continues from the stage's checkpoint (or starts the stage again if it had none yet),
    never refused as an existing model; the saved config.json stands for the command's --set."""
    if not ElasticAttempt.from_environment().continues(model_dir, stage_name):
        return resume, overwrite, overrides
    resume = checkpoint_path(model_dir, stage_name).is_file()
    return resume, True, (() if resume else overrides)


def train(base_dir, data_name, model_name, config, overrides=(), config_name=None, overwrite=False,
          device="auto", seed=0, quiet=False, resume=False, checkpoint_minutes=10.0, checkpoint_steps=None):
    """Stage 1: latent optimization. Writes cache/models/<model_name>/ and returns its path."""
    base = BaseDir(base_dir)
    model_dir = base.existing_model_dir(model_name) if resume else base.model_dir(model_name)
    if not resume and is_published_model_dir(model_dir) and not overwrite:
        raise UserError(base.published_model_message(model_dir, model_name))
    dataset = store.load(base.existing_data_path(data_name))
    resume, overwrite, overrides = elastic_continuation(model_dir, "latent", resume, overwrite, overrides)
    if resume:
        if overrides:
            raise UserError("--set cannot be combined with --resume: the run continues with its saved config.json")
        config = read_config(model_dir)
        check_same_data(config, data_name, dataset, "resuming train")
    else:
        if model_exists(model_dir) and not overwrite:
            raise UserError(existing_model_message(model_name, model_dir))
        config = configuration.apply_overrides(config, overrides)
        config["config_name"] = config_name
        config["seed"] = seed
        config["data"] = data_block(data_name, dataset, config)
    return _run_stage(base, model_name, data_name, dataset, config, "latent", device=device, seed=seed,
                      quiet=quiet, resume=resume, checkpoint_minutes=checkpoint_minutes,
                      checkpoint_steps=checkpoint_steps, overwrite=overwrite)


def train_encoders(base_dir, data_name, model_name, overrides=(), overwrite=False, device="auto", seed=0,
                   quiet=False, resume=False, checkpoint_minutes=10.0, checkpoint_steps=None):
    """Stage 2: amortized encoders. Adds `amortized.pt` to an existing model."""
    return _train_later_stage(base_dir, data_name, model_name, "amortized", overrides=overrides, overwrite=overwrite,
                              device=device, seed=seed, quiet=quiet, resume=resume,
                              checkpoint_minutes=checkpoint_minutes, checkpoint_steps=checkpoint_steps)


def train_synthesis(base_dir, data_name, model_name, overrides=(), overwrite=False, device="auto", seed=0,
                    quiet=False, resume=False, checkpoint_minutes=10.0, checkpoint_steps=None):
    """Stage 3 (OverLORD): adversarial tuning. Adds `synthesis.pt` to a model with trained encoders."""
    return _train_later_stage(base_dir, data_name, model_name, "synthesis", overrides=overrides, overwrite=overwrite,
                              device=device, seed=seed, quiet=quiet, resume=resume,
                              checkpoint_minutes=checkpoint_minutes, checkpoint_steps=checkpoint_steps)


def train_all_stages(base_dir, data_name, model_name, config, overrides=(), config_name=None, overwrite=False,
                     device="auto", seed=0, quiet=False, resume=False, checkpoint_minutes=10.0, checkpoint_steps=None):
    """`train`, then `train-encoders` (and `train-synthesis` for OverLORD) in a row, as the published
    OverLORD's `train` does. With `resume` (or as a torchrun restart of the job training the model),
    completed stages are skipped, the stage with a checkpoint continues, and the rest run."""
    options = dict(device=device, seed=seed, quiet=quiet, checkpoint_minutes=checkpoint_minutes,
                   checkpoint_steps=checkpoint_steps)
    model_dir = BaseDir(base_dir).model_dir(model_name)
    resume = resume or ElasticAttempt.from_environment().continues(model_dir)
    if not resume or not weights_path(model_dir, "latent").is_file():
        train(base_dir, data_name, model_name, config, overrides=overrides, config_name=config_name,
              overwrite=overwrite, resume=resume, **options)
    later = [train_encoders] + ([train_synthesis] if arch_of(config) == "overlord" else [])
    for stage_name, run in zip(("amortized", "synthesis"), later):
        if resume and weights_path(model_dir, stage_name).is_file():
            continue
        run(base_dir, data_name, model_name, overwrite=True,
            resume=resume and checkpoint_path(model_dir, stage_name).is_file(), **options)
    return model_dir


def load_stage_state(model_dir, config, stage_name):
    """The checked weights of a completed earlier stage, which a later stage starts from."""
    path = weights_path(model_dir, stage_name)
    if not path.is_file():
        raise UserError(f"model {model_dir.name!r} has no completed stage {STAGE_NUMBERS[stage_name]} ({path} is "
                        f"missing): run {COMMANDS[stage_name]} first")
    state = load_tensors(path)
    load_state_checked(stage_module_class(config, stage_name)(config), state, str(path))
    return state


def _train_later_stage(base_dir, data_name, model_name, stage_name, overrides, overwrite, device, seed, quiet,
                       resume, checkpoint_minutes, checkpoint_steps):
    """A stage that adds to an existing model: only its own config block (and runtime) may change."""
    base = BaseDir(base_dir)
    model_dir = base.existing_model_dir(model_name)
    dataset = store.load(base.existing_data_path(data_name))
    resume, overwrite, overrides = elastic_continuation(model_dir, stage_name, resume, overwrite, overrides)
    config = read_config(model_dir)
    stage_key(config, stage_name)
    check_same_data(config, data_name, dataset, COMMANDS[stage_name])
    if resume and overrides:
        raise UserError("--set cannot be combined with --resume: the run continues with its saved config.json")
    config = configuration.apply_overrides(config, overrides, allowed_prefixes=override_prefixes(config, stage_name))
    done = weights_path(model_dir, stage_name)
    if not resume and done.exists() and not overwrite:
        raise UserError(existing_stage_message(model_name, stage_name, done))
    return _run_stage(base, model_name, data_name, dataset, config, stage_name, device=device, seed=seed,
                      quiet=quiet, resume=resume, checkpoint_minutes=checkpoint_minutes,
                      checkpoint_steps=checkpoint_steps, overwrite=overwrite)


def build_stage(stage_name, config, dataset, device, seed, model_dir, distributed=None):
    """The Stage object for the config's architecture, started from the earlier stages' weights."""
    previous = []
    stage = stage_name
    while stage in PREVIOUS_STAGE:
        stage = PREVIOUS_STAGE[stage]
        previous.insert(0, load_stage_state(model_dir, config, stage))
    if arch_of(config) == "lord":
        from lord.training.amortized import AmortizedStage
        from lord.training.latent import LatentStage

        stage_class = {"latent": LatentStage, "amortized": AmortizedStage}[stage_name]
    else:
        from lord.training.overlord_amortized import OverlordAmortizedStage
        from lord.training.overlord_latent import OverlordLatentStage
        from lord.training.synthesis import SynthesisStage

        stage_class = {"latent": OverlordLatentStage, "amortized": OverlordAmortizedStage,
                       "synthesis": SynthesisStage}[stage_name]
    return stage_class(config, dataset, device, *previous, seed=seed, distributed=distributed)


def prepare_model_dir(base, model_name, config, stage_name, resume, overwrite):
    """Under the model's lock: the existence checks once more (another process may have written the model
    since the first ones), then a new model directory holding config.json, or a later stage's old files gone."""
    model_dir = base.model_dir(model_name)
    remove_leftover_staging(model_dir)
    done = weights_path(model_dir, stage_name)
    if resume:
        base.existing_model_dir(model_name)
        return
    if stage_name == "latent":
        if model_exists(model_dir) and not overwrite:
            raise UserError(existing_model_message(model_name, model_dir))
        with staged_model_dir(model_dir) as staging:
            atomic_write_json(staging / "config.json", config)
        if overwrite:
            remove_tensorboard(base, model_name)
        return
    base.existing_model_dir(model_name)
    if done.exists() and not overwrite:
        raise UserError(existing_stage_message(model_name, stage_name, done))
    for stale in (done, checkpoint_path(model_dir, stage_name)):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    atomic_write_json(model_dir / "config.json", config)


def _run_stage(base, model_name, data_name, dataset, config, stage_name, device, seed, quiet, resume,
               checkpoint_minutes, checkpoint_steps=None, overwrite=False):
    """What every stage shares once its config is settled: the last checks, building the stage from
    the earlier stages' weights, the lock, preparing the directory, and the loop. Under torchrun every
    process runs this; rank 0 alone touches the model directory."""
    model_dir = base.model_dir(model_name)
    check_data_fits(config, data_name, dataset)
    key = stage_key(config, stage_name)
    check_batch_size(config[key]["batch_size"], dataset, f"{key}.batch_size")
    distributed, device = from_environment(device)
    seed_everything(seed)
    stage = build_stage(stage_name, config, dataset, device, seed, model_dir, distributed)
    attempt = ElasticAttempt.from_environment()
    for line in describe_processes(distributed, len(dataset), device, attempt):
        if not quiet and distributed.is_main:
            print(line, flush=True)
    done = weights_path(model_dir, stage_name)
    restart_of = attempt.run_id if attempt.continues(model_dir, stage_name) else None
    lock = ModelLock(model_dir, attempt.run_id, restart_of) if distributed.is_main else contextlib.nullcontext()
    with lock:
        if distributed.is_main:
            prepare_model_dir(base, model_name, config, stage_name, resume, overwrite)
        if attempt.run_id is not None and distributed.is_main:
            atomic_write_bytes(model_dir / ELASTIC_MARKER, attempt.marker(stage_name))
        distributed.barrier()
        run = Run(stage, model_dir, base.tensorboard_dir(model_name), seed=seed, quiet=quiet,
                  checkpoint_minutes=checkpoint_minutes, log_every=config["runtime"]["log_every"],
                  distributed=distributed, checkpoint_steps=checkpoint_steps)
        run.run(resume=resume)
    if not quiet and distributed.is_main:
        print(f"stage {STAGE_NUMBERS[stage_name]} done: {done}")
        if stage_name == "amortized" and weights_path(model_dir, "synthesis").exists():
            print(f"note: {weights_path(model_dir, 'synthesis')} was tuned from the previous encoders; "
                  "run train-synthesis --overwrite to tune these")
    return model_dir
