"""A model directory: building networks from its config and loading its weights safely.

    cache/models/<name>/config.json            the full resolved config, plus the data it was trained on
    cache/models/<name>/<stage>.pt             final weights of a completed stage (a flat state_dict)
    cache/models/<name>/checkpoint-<stage>.pt  the training state, for --resume
    cache/models/<name>/metrics.jsonl          one JSON object per epoch of every stage
    cache/models/<name>/samples/               translation grids, one PNG per epoch and stage

Stages: `latent` (train), `amortized` (train-encoders), `synthesis` (train-synthesis, OverLORD).
All weight files are loaded with `weights_only=True`: a file carrying a pickle payload runs no code.
"""

from pathlib import Path

import torch

from lord.assets import read_json
from lord.errors import UserError
from lord.networks.lord import Encoder, Generator

STAGES = ("latent", "amortized", "synthesis")


def weights_path(model_dir, stage):
    return Path(model_dir) / f"{stage}.pt"


def checkpoint_path(model_dir, stage):
    return Path(model_dir) / f"checkpoint-{stage}.pt"


def read_config(model_dir):
    return read_json(Path(model_dir) / "config.json", "model config")


def completed_stages(model_dir):
    return [stage for stage in STAGES if weights_path(model_dir, stage).is_file()]


def load_tensors(path, what="weights"):
    """torch.load restricted to tensors and plain containers; a pickle payload is refused, not run."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"missing {what} file {path}") from None
    except Exception as error:  # pickle payloads, torn or foreign files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot load {what} file {path} safely: {first_line}") from None


def load_state_checked(module, state, origin):
    """load_state_dict, with an error naming the mismatched keys or shapes."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{key} {tuple(state[key].shape)} vs {tuple(own[key].shape)}"
        for key in sorted(set(own) & set(state))
        if tuple(state[key].shape) != tuple(own[key].shape)
    ]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else ""))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected[:6]) + (" ..." if len(unexpected) > 6 else ""))
    if wrong:
        problems.append("shape mismatch " + ", ".join(wrong[:6]) + (" ..." if len(wrong) > 6 else ""))
    if problems:
        raise UserError(f"{origin} does not fit the model built from its config: {'; '.join(problems)}")
    module.load_state_dict(state)


def img_shape_of(config):
    return tuple(config["data"]["img_shape"])


def build_generator(config):
    return Generator(
        config["content_dim"], config["class_dim"], img_shape_of(config),
        n_adain_layers=config["n_adain_layers"], adain_dim=config["adain_dim"],
        final_conv_dim=config["final_conv_dim"],
    )


def build_encoder(config, code_dim):
    return Encoder(
        img_shape_of(config), code_dim, channels=tuple(config["encoder"]["channels"]),
        fc_dim=config["encoder"]["fc_dim"],
    )


class LatentModel(torch.nn.Module):
    """Stage 1: the generator with one free code per class and one per training image."""

    def __init__(self, config):
        super().__init__()
        data = config["data"]
        self.generator = build_generator(config)
        self.class_embedding = torch.nn.Embedding(data["n_classes"], config["class_dim"])
        self.content_embedding = torch.nn.Embedding(data["n_images"], config["content_dim"])
        torch.nn.init.uniform_(self.class_embedding.weight, -0.05, 0.05)
        torch.nn.init.uniform_(self.content_embedding.weight, -0.05, 0.05)


class AmortizedModel(torch.nn.Module):
    """Stage 2: encoders that infer both codes from an image, and the tuned generator."""

    def __init__(self, config):
        super().__init__()
        self.content_encoder = build_encoder(config, config["content_dim"])
        self.class_encoder = build_encoder(config, config["class_dim"])
        self.generator = build_generator(config)

    def forward(self, images):
        return self.generator(self.content_encoder(images), self.class_encoder(images))


def load_stage(model_dir, stage, config=None):
    """The module of a completed stage with its final weights, on the CPU, in eval mode."""
    config = read_config(model_dir) if config is None else config
    if config.get("arch", "lord") != "lord":
        raise UserError(f"model {model_dir} has arch {config.get('arch')!r}; this loader reads LORD models")
    path = weights_path(model_dir, stage)
    if not path.is_file():
        done = completed_stages(model_dir)
        raise UserError(
            f"model {Path(model_dir).name} has no completed {stage} stage"
            + (f" (completed: {', '.join(done)})" if done else " (no stage completed yet)")
        )
    module = {"latent": LatentModel, "amortized": AmortizedModel}[stage](config)
    load_state_checked(module, load_tensors(path), str(path))
    return module.eval()
