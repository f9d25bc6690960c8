#!/usr/bin/env python3
"""LORD / OverLORD command line: parsing and dispatch only; the work is done in the `lord` package."""

import argparse
import sys

import config
from lord.errors import UserError


DESCRIPTION = """\
Disentangle what a label explains in images (a person's age, an animal's species, an object's class) from
everything else, and translate images from one label to another: LORD and OverLORD, trained on your data.
New here? Run `python lord.py demo` (a few minutes on a CPU), then open its model in a web page with the
`serve` command it prints."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, so scripts see exactly one line on stderr."""

    def error(self, message):
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")

    def format_help(self):
        """The description first, so `--help` opens with what the toolkit does rather than the usage line."""
        if not self.description:
            return super().format_help()
        description, self.description = self.description, None
        try:
            rest = super().format_help()
        finally:
            self.description = description
        formatter = self._get_formatter()
        formatter.add_text(description)
        return formatter.format_help() + "\n" + rest


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def port_number(text):
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number up to 65535, got {value}")
    return value


def ratio(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a ratio strictly between 0 and 1, got {text}")
    return value


def cmd_preprocess(args):
    from lord.data import preprocess

    preprocess(
        args.base_dir, args.dataset_id, args.dataset_path, args.data_name or args.out_data_name,
        overlord_defaults=args.out_data_name is not None, overwrite=args.overwrite,
        img_size=args.img_size, n_classes=args.n_classes, channels=args.channels, rotations=args.rotations,
        n_identities=args.n_identities, action=args.action, condition=args.condition, split=args.split,
        part=args.part, workers=args.workers, skip_bad=args.skip_bad or None, seed=args.seed, quiet=args.quiet,
    )


def cmd_split_classes(args):
    from lord.data.split import split_classes

    split_classes(
        args.base_dir, args.input_data_name, args.train_data_name, args.test_data_name,
        args.num_test_classes, seed=args.seed, overwrite=args.overwrite, quiet=args.quiet,
    )


def cmd_split_samples(args):
    from lord.data.split import split_samples

    split_samples(
        args.base_dir, args.input_data_name, args.train_data_name, args.test_data_name,
        args.test_split, seed=args.seed, overwrite=args.overwrite, quiet=args.quiet,
    )


def training_options(args):
    return dict(
        device=args.device, seed=args.seed, quiet=args.quiet, resume=args.resume,
        checkpoint_minutes=args.checkpoint_minutes, checkpoint_steps=args.checkpoint_steps,
    )


def cmd_train(args):
    from lord.training import train, train_all_stages

    run = train_all_stages if args.all_stages or args.config in config.OVERLORD_NAMES else train
    run(
        args.base_dir, args.data_name, args.model_name, config.get_config(args.config), overrides=args.set,
        config_name=config.resolve(args.config), overwrite=args.overwrite, **training_options(args),
    )


def cmd_train_encoders(args):
    from lord.training import train_encoders

    train_encoders(
        args.base_dir, args.data_name, args.model_name, overrides=args.set, overwrite=args.overwrite,
        **training_options(args),
    )


def cmd_train_synthesis(args):
    from lord.training import train_synthesis

    train_synthesis(
        args.base_dir, args.data_name, args.model_name, overrides=args.set, overwrite=args.overwrite,
        **training_options(args),
    )


def cmd_manipulate(args):
    from lord.inference import manipulate

    manipulate(
        args.base_dir, args.model_name, args.img_path, args.output_img_path, reference_path=args.reference_img_path,
        label=args.label, device=args.device, quiet=args.quiet,
    )


def cmd_import_model(args):
    from lord.interop import import_model

    import_model(args.base_dir, args.input_dir, args.model_name, config.import_presets(), overwrite=args.overwrite,
                 quiet=args.quiet)


def cmd_demo(args):
    from lord.demo import run_demo

    run_demo(
        args.base_dir, config.get_config(args.config), config_name=args.config, device=args.device,
        seed=args.seed, quiet=args.quiet, overrides=args.set, overwrite=args.overwrite,
    )


def cmd_serve(args):
    from lord.serve import serve

    presets = {name: config.get_config(name) for name in config.names()}
    serve(args.base_dir, model_name=args.model_name, host=args.host, port=args.port,
          device=args.serve_device or args.device, presets=presets, quiet=args.quiet)


def cmd_evaluate(args):
    from lord.evaluation.evaluate import evaluate

    evaluate(
        args.base_dir, args.model_name, args.data_name, stage=args.stage, output=args.output, n_pairs=args.n_pairs,
        seed=args.seed, device=args.device, quiet=args.quiet, export=args.export, face=args.face,
    )


def cmd_report(args):
    from lord.evaluation.report import report

    print(report(args.paths, columns=args.columns or None, fmt=args.format, base_dir=args.base_dir,
                 seeds=args.over_seeds), end="")


def add_training_arguments(parser):
    parser.add_argument("-dn", "--data-name", required=True, help="preprocessed data to train on")
    parser.add_argument("-mn", "--model-name", required=True, help="model directory name under cache/models")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.n_epochs=50 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue from the stage's last checkpoint")
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0, metavar="M",
                        help="also checkpoint every M minutes inside an epoch (default: 10)")
    parser.add_argument("--checkpoint-steps", type=positive_int, metavar="K",
                        help="also checkpoint every K steps, which bounds the work a failure loses (default: off)")


def build_parser():
    parser = Parser(prog="lord.py", description=DESCRIPTION)
    parser.add_argument("-bd", "--base-dir", default=".", help="root of cache/ (default: .)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="training device (default: auto = cuda when available)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for splits, training and sampling")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or progress messages")
    commands = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=Parser)
    commands.required = True

    sub = commands.add_parser("preprocess", help="turn a raw dataset into cache/preprocess/<data-name>.npz")
    sub.add_argument("-di", "--dataset-id", required=True, help="dataset id (see the README table)")
    sub.add_argument("-dp", "--dataset-path", help="root directory of the raw dataset")
    names = sub.add_mutually_exclusive_group(required=True)
    names.add_argument("-dn", "--data-name", help="output data name")
    names.add_argument("-odn", "--out-data-name",
                       help="output data name, with the published OverLORD's defaults (celeba: --img-size 128)")
    sub.add_argument("--img-size", type=positive_int, help="output side in pixels (dataset default if omitted)")
    sub.add_argument("--n-classes", type=positive_int, help="synthetic: number of object classes")
    sub.add_argument("--channels", type=int, choices=[1, 3], help="force 1 (gray) or 3 (RGB) channels")
    sub.add_argument("--rotations", type=positive_int, choices=[1, 2, 4, 8],
                     help="synthetic: evenly spaced rotations to render (default: all 8)")
    sub.add_argument("--n-identities", type=positive_int, metavar="K",
                     help="celeba: keep K random people (reproducible with --seed)")
    sub.add_argument("--action", help="kth: action to read (default: handwaving)")
    sub.add_argument("--condition", help="kth: recording condition d1..d4 (default: d4)")
    sub.add_argument("--split", help="afhq: train or test; edges2shoes: train or val (default: train)")
    sub.add_argument("--part", help="celebahq: face part whose masks are stored, e.g. hair (default: hair)")
    sub.add_argument("--workers", type=positive_int, help="decoding processes (default: all cores)")
    sub.add_argument("--skip-bad", action="store_true", help="skip unreadable images instead of stopping")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing output of that name")
    sub.set_defaults(run=cmd_preprocess)

    sub = commands.add_parser("split-classes", help="hold out whole classes as a test set")
    sub.add_argument("-idn", "--input-data-name", required=True)
    sub.add_argument("-trdn", "--train-data-name", required=True)
    sub.add_argument("-tsdn", "--test-data-name", required=True)
    sub.add_argument("-ntsi", "--num-test-classes", type=positive_int, required=True,
                     help="number of random classes to hold out")
    sub.add_argument("--overwrite", action="store_true", help="replace existing outputs of those names")
    sub.set_defaults(run=cmd_split_classes)

    sub = commands.add_parser("split-samples", help="hold out a random share of the images as a test set")
    sub.add_argument("-idn", "--input-data-name", required=True)
    sub.add_argument("-trdn", "--train-data-name", required=True)
    sub.add_argument("-tsdn", "--test-data-name", required=True)
    sub.add_argument("-ts", "--test-split", type=ratio, required=True, help="share of test images, in (0, 1)")
    sub.add_argument("--overwrite", action="store_true", help="replace existing outputs of those names")
    sub.set_defaults(run=cmd_split_samples)

    sub = commands.add_parser("train", help="stage 1: latent optimization of the generator and embeddings")
    add_training_arguments(sub)
    sub.add_argument("-cf", "--config", default="lord", choices=config.names() + list(config.OVERLORD_NAMES),
                     metavar="NAME",
                     help=f"named configuration from config.py (default: lord; one of {', '.join(config.names())}); "
                          f"the published OverLORD names {', '.join(config.OVERLORD_NAMES)} select its presets and "
                          "train all stages, as its train does")
    sub.add_argument("--all-stages", action="store_true",
                     help="then train-encoders (and train-synthesis for OverLORD) in a row")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing model of that name")
    sub.set_defaults(run=cmd_train)

    sub = commands.add_parser("train-encoders", help="stage 2: amortized encoders for unseen images")
    add_training_arguments(sub)
    sub.add_argument("--overwrite", action="store_true", help="replace this model's existing stage-2 weights")
    sub.set_defaults(run=cmd_train_encoders)

    sub = commands.add_parser("train-synthesis",
                              help="stage 3 (OverLORD): adversarial tuning of the encoders and the generator")
    add_training_arguments(sub)
    sub.add_argument("--overwrite", action="store_true", help="replace this model's existing stage-3 weights")
    sub.set_defaults(run=cmd_train_synthesis)

    sub = commands.add_parser("manipulate", help="translate image files with a trained LORD or OverLORD model")
    sub.add_argument("-mn", "--model-name", required=True, help="model directory name under cache/models")
    sub.add_argument("-i", "--img-path", "--img", required=True,
                     help="image whose content (uncorrelated code) is kept; a directory translates every image in it")
    sub.add_argument("-r", "--reference-img-path", "--reference",
                     help="image giving the label (and correlated code); without it, translate to every label value")
    sub.add_argument("-o", "--output-img-path", "--output", required=True,
                     help="output PNG; a directory when --img-path is one (one <name>.png per input)")
    sub.add_argument("--label", type=int, metavar="VALUE", help="translate to this label value only")
    sub.set_defaults(run=cmd_manipulate)

    sub = commands.add_parser("import-model",
                              help="a model directory of the published lord-pytorch or OverLORD code, as a model here")
    sub.add_argument("-i", "--input-dir", required=True,
                     help="the original model directory (config.pkl, latent.pth, amortized.pth)")
    sub.add_argument("-mn", "--model-name", required=True, help="model directory name under cache/models")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing model of that name")
    sub.set_defaults(run=cmd_import_model)

    sub = commands.add_parser("evaluate", help="the papers' metrics for a trained model on preprocessed data (JSON)")
    sub.add_argument("-mn", "--model-name", required=True, help="model directory name under cache/models")
    sub.add_argument("-dn", "--data-name", required=True, help="preprocessed data to evaluate on")
    sub.add_argument("--stage", choices=["latent", "amortized", "synthesis"],
                     help="stage to evaluate (default: the latest completed one)")
    sub.add_argument("--output", metavar="FILE.json",
                     help="where to write the result (default: the model dir's evaluation-<data>-<stage>.json)")
    sub.add_argument("--n-pairs", type=positive_int, default=1000, metavar="N",
                     help="translation pairs for content transfer, translation accuracy and FID (default: 1000)")
    sub.add_argument("--export", metavar="DIR",
                     help="also write the scored translations and their source images as PNG files in DIR (a new "
                          "or empty directory), in the layout of the OverLORD evaluation scripts, with index.json")
    sub.add_argument("--face", action="store_true",
                     help="also score the face metrics on data that is not a face set (they are scored on celeba, "
                          "rafd, ffhq and celebahq data anyway)")
    sub.set_defaults(run=cmd_evaluate)

    sub = commands.add_parser("report", help="gather evaluation results into one table (markdown or CSV)")
    sub.add_argument("paths", nargs="+", metavar="PATH",
                     help="evaluation JSON files, model directories or model names under the base dir")
    sub.add_argument("--format", choices=["markdown", "csv"], default="markdown",
                     help="table format (default: markdown)")
    sub.add_argument("--columns", action="append", metavar="NAMES",
                     help="columns or families to show, comma-separated, e.g. class_from_content,translation "
                          "(repeatable; default: every column some result fills)")
    sub.add_argument("--over-seeds", action="store_true",
                     help="one row per model across seeds (names ending in -s<seed>): each metric's mean and "
                          "standard deviation")
    sub.set_defaults(run=cmd_report)

    sub = commands.add_parser("serve", help="a local web page: translate images, look at a model while it trains")
    sub.add_argument("-mn", "--model-name", help="model to preselect (default: the first one)")
    sub.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 for every network)")
    sub.add_argument("--port", type=port_number, default=7860, help="port to listen on (default: 7860)")
    sub.add_argument("--device", dest="serve_device", choices=["auto", "cpu", "cuda"],
                     help="device for the models (default: the global --device, auto)")
    sub.set_defaults(run=cmd_serve)

    sub = commands.add_parser("demo", help="the whole pipeline on a small synthetic set, on CPU in minutes")
    sub.add_argument("-cf", "--config", default="lord-tiny", choices=config.names(), metavar="NAME",
                     help="configuration (default: lord-tiny)")
    sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    sub.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier demo")
    sub.set_defaults(run=cmd_demo)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
