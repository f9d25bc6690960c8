#!/usr/bin/env python3
"""LORD / OverLORD command line: parsing and dispatch only; the work is done in the `lord` package."""

import argparse
import sys
import textwrap

import config
import lord
from lord.data.registry import SPECS
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
        resize=args.resize, align_faces=args.align_faces or None,
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
        args.base_dir, args.model_name, args.input, args.output, reference_path=args.reference,
        label=args.label, device=args.device, quiet=args.quiet, align=args.align,
    )


def cmd_align_faces(args):
    from lord.faces import align_faces

    align_faces(args.input, args.output, size=args.size, landmarks=args.landmarks, quiet=args.quiet,
                side_by_side=args.side_by_side)


def cmd_import_model(args):
    from lord.interop import import_model

    import_model(args.base_dir, args.input, args.model_name, config.import_presets(), overwrite=args.overwrite,
                 quiet=args.quiet)


def cmd_info(args):
    import json

    from lord.model import describe_model, format_description

    presets = {name: config.get_config(name) for name in config.names()}
    description = describe_model(args.base_dir, args.model_name, presets)
    print(json.dumps(description, indent=2) if args.json else format_description(description))


def cmd_demo(args):
    from lord.demo import run_demo

    run_demo(
        args.base_dir, config.get_config(args.config), config_name=args.config, device=args.device,
        seed=args.seed, quiet=args.quiet, overrides=args.set, overwrite=args.overwrite,
    )


def cmd_serve(args):
    from lord.serve import parse_auth, read_auth_file, serve

    auth = parse_auth(args.auth) if args.auth else read_auth_file(args.auth_file) if args.auth_file else None
    presets = {name: config.get_config(name) for name in config.names()}
    serve(args.base_dir, model_name=args.model_name, host=args.host, port=args.port, device=args.device,
          presets=presets, quiet=args.quiet, auth=auth)


def cmd_evaluate(args):
    from lord.evaluation.evaluate import evaluate

    evaluate(
        args.base_dir, args.model_name, args.data_name, stage=args.stage, output=args.output, n_pairs=args.n_pairs,
        seed=args.seed, device=args.device, quiet=args.quiet, export=args.export, face=args.face,
        overwrite=args.overwrite,
    )


def cmd_report(args):
    from lord.evaluation.report import report

    print(report(args.paths, columns=args.columns or None, fmt=args.format, base_dir=args.base_dir,
                 seeds=args.over_seeds), end="")


def add_global_options(parser, on_subcommand=False):
    """-bd, --device, --seed and -q. On a subcommand they default to SUPPRESS, so a value given before the
    subcommand is kept unless it is given again after it."""
    def given(value):
        return argparse.SUPPRESS if on_subcommand else value

    group = parser.add_argument_group("global options (before or after the subcommand)")
    group.add_argument("-bd", "--base-dir", default=given("."), help="root of cache/ (default: .)")
    group.add_argument("--device", choices=["auto", "cpu", "cuda"], default=given("auto"),
                       help="device for training, inference and evaluation (default: auto = cuda when available)")
    group.add_argument("--seed", type=int, default=given(0), help="random seed for splits, training and sampling "
                       "(default: 0)")
    group.add_argument("-q", "--quiet", action="store_true", default=given(False),
                       help="no progress bars or progress messages")


def examples(*lines, before=""):
    return (before + "\n\n" if before else "") + "examples:\n" + "\n".join(f"  {line}" for line in lines)


def dataset_table():
    """The registry's dataset ids, each with its description wrapped beside it."""
    width = max(len(dataset_id) for dataset_id in SPECS)
    lines = ["dataset ids (-di):"]
    for spec in SPECS.values():
        lines += textwrap.wrap(spec.description, 100, initial_indent=f"  {spec.id:<{width}}  ",
                               subsequent_indent=" " * (width + 4))
    return "\n".join(lines)


def add_model_name(parser, meaning="model directory name under cache/models"):
    parser.add_argument("-mn", "--model-name", required=True, help=meaning)


def add_training_arguments(parser, set_help):
    parser.add_argument("-dn", "--data-name", required=True, help="preprocessed data to train on")
    add_model_name(parser)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config key (repeatable), {set_help}")
    parser.add_argument("--resume", action="store_true", help="continue from the stage's last checkpoint")
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0, metavar="M",
                        help="also checkpoint every M minutes inside an epoch (default: 10)")
    parser.add_argument("--checkpoint-steps", type=positive_int, metavar="K",
                        help="also checkpoint every K steps, which bounds the work a failure loses (default: off)")


LABEL_HELP = ("translate to this label value only: an index 0..N-1 into the model's label values; "
              "`lord.py info -mn MODEL` lists them with their names")


def build_parser():
    parser = Parser(prog="lord.py", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {lord.__version__}",
                        help="print the toolkit's version and exit")
    add_global_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=Parser)
    commands.required = True
    global_options = Parser(add_help=False)
    add_global_options(global_options, on_subcommand=True)

    def command(name, summary, epilog):
        """A subcommand whose epilog (examples, tables) keeps its lines, with the global options."""
        return commands.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".",
                                   epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter,
                                   parents=[global_options])

    sub = command("preprocess", "turn a raw dataset into cache/preprocess/<data-name>.npz", examples(
        "python lord.py -bd runs preprocess -di synthetic -dn shapes --img-size 32 --n-classes 10",
        "python lord.py -bd runs preprocess -di folder -dp my_images -dn mine --img-size 64",
        "python lord.py preprocess -di ffhq -dp ffhq-dataset -odn ffhq-x256-age",
        before=dataset_table()))
    sub.add_argument("-di", "--dataset-id", required=True, metavar="ID", help="dataset id, one of the list below")
    sub.add_argument("-dp", "--dataset-path", help="root directory of the raw dataset (not for synthetic)")
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
    sub.add_argument("--resize", choices=["published", "area"],
                     help="smallnorb, celeba, rafd (cv2 bilinear), ffhq, afhq, celebahq (PIL bicubic): 'published' "
                          "resizes with the filter of the authors' preprocessing (default), 'area' with OpenCV's "
                          "area filter (less aliasing)")
    sub.add_argument("--align-faces", action="store_true",
                     help="folder: align every photo's largest face as FFHQ was aligned, at --img-size (needs the "
                          "faces extra); photos without a face stop the run, or are skipped with --skip-bad")
    sub.add_argument("--workers", type=positive_int, help="decoding processes (default: all cores)")
    sub.add_argument("--skip-bad", action="store_true", help="skip unreadable images instead of stopping")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing output of that name")
    sub.set_defaults(run=cmd_preprocess)

    split_names = [("-idn", "--input-data-name", "preprocessed data to split"),
                   ("-trdn", "--train-data-name", "output data name of the training side"),
                   ("-tsdn", "--test-data-name", "output data name of the test side")]
    sub = command("split-classes", "hold out whole classes as a test set", examples(
        "python lord.py -bd runs split-classes -idn shapes -trdn shapes-train -tsdn shapes-test -ntsi 4",
        "python lord.py --seed 1 split-classes -idn cars3d -trdn cars3d-train -tsdn cars3d-test -ntsi 20"))
    for short, long, meaning in split_names:
        sub.add_argument(short, long, required=True, help=meaning)
    sub.add_argument("-ntsi", "--num-test-classes", type=positive_int, required=True,
                     help="number of random classes to hold out (reproducible with --seed)")
    sub.add_argument("--overwrite", action="store_true", help="replace existing outputs of those names")
    sub.set_defaults(run=cmd_split_classes)

    sub = command("split-samples", "hold out a random share of the images as a test set", examples(
        "python lord.py -bd runs split-samples -idn shapes -trdn shapes-train -tsdn shapes-test -ts 0.1",
        "python lord.py split-samples -idn mine -trdn mine-train -tsdn mine-test -ts 0.2 --overwrite"))
    for short, long, meaning in split_names:
        sub.add_argument(short, long, required=True, help=meaning)
    sub.add_argument("-ts", "--test-split", type=ratio, required=True,
                     help="share of test images, in (0, 1) (reproducible with --seed)")
    sub.add_argument("--overwrite", action="store_true", help="replace existing outputs of those names")
    sub.set_defaults(run=cmd_split_samples)

    sub = command("train", "stage 1: latent optimization of the generator and embeddings", examples(
        "python lord.py -bd runs train -dn shapes-train -mn shapes -cf lord-tiny --set train.n_epochs=50",
        "python lord.py train -dn cars3d-train -mn cars3d --resume",
        "python lord.py train -dn ffhq-x256-age -mn ffhq -cf overlord-ffhq --all-stages"))
    add_training_arguments(sub, "any key of the preset, e.g. --set train.n_epochs=50 (LORD presets) or "
                                "--set disentanglement.n_epochs=50 (OverLORD presets)")
    sub.add_argument("-cf", "--config", default="lord", choices=config.names() + list(config.OVERLORD_NAMES),
                     metavar="NAME",
                     help=f"named configuration from config.py (default: lord; one of {', '.join(config.names())}); "
                          f"the published OverLORD names {', '.join(config.OVERLORD_NAMES)} select its presets and "
                          "train all stages, as its train does")
    sub.add_argument("--all-stages", action="store_true",
                     help="then train-encoders (and train-synthesis for OverLORD) in a row")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing model of that name")
    sub.set_defaults(run=cmd_train)

    sub = command("train-encoders", "stage 2: amortized encoders for unseen images", examples(
        "python lord.py -bd runs train-encoders -dn shapes-train -mn shapes",
        "python lord.py train-encoders -dn cars3d-train -mn cars3d --set train_encoders.n_epochs=100 --overwrite",
        "python lord.py train-encoders -dn ffhq-x256-age -mn ffhq --set amortization.n_epochs=20"))
    add_training_arguments(sub, "only keys of this stage and runtime.*: --set train_encoders.n_epochs=100 (LORD) "
                                "or --set amortization.n_epochs=20 (OverLORD), --set runtime.log_every=50")
    sub.add_argument("--overwrite", action="store_true", help="replace this model's existing stage-2 weights")
    sub.set_defaults(run=cmd_train_encoders)

    sub = command("train-synthesis", "stage 3 (OverLORD): adversarial tuning of the encoders and the generator",
                  examples("python lord.py train-synthesis -dn ffhq-x256-age -mn ffhq",
                           "python lord.py train-synthesis -dn ffhq-x256-age -mn ffhq --set synthesis.n_epochs=20 "
                           "--overwrite",
                           "python lord.py train-synthesis -dn ffhq-x256-age -mn ffhq --resume"))
    add_training_arguments(sub, "only keys of this stage and runtime.*: --set synthesis.n_epochs=20, "
                                "--set runtime.log_every=50")
    sub.add_argument("--overwrite", action="store_true", help="replace this model's existing stage-3 weights")
    sub.set_defaults(run=cmd_train_synthesis)

    sub = command("manipulate", "translate image files with a trained LORD or OverLORD model", examples(
        "python lord.py manipulate -mn ffhq -i face.png -o face-in-all-ages.png",
        "python lord.py manipulate -mn ffhq -i face.png -o face-30s.png --label 3",
        "python lord.py manipulate -mn afhq -i cats/ -r dog.jpg -o cats-as-dog/"))
    add_model_name(sub)
    sub.add_argument("-i", "--input", "--img-path", "--img", dest="input", required=True, metavar="PATH",
                     help="image whose content (uncorrelated code) is kept; a directory translates every image in it")
    sub.add_argument("-r", "--reference", "--reference-img-path", dest="reference", metavar="PATH",
                     help="image giving the label (and correlated code); without it, translate to every label value")
    sub.add_argument("-o", "--output", "--output-img-path", dest="output", required=True, metavar="PATH",
                     help="output PNG; a directory when --input is one (one <name>.png per input)")
    sub.add_argument("--label", type=int, metavar="INDEX", help=LABEL_HELP)
    sub.add_argument("--align", action="store_true",
                     help="first align each photo's largest face (the reference's too) as the FFHQ faces were, at "
                          "the model's size (needs the faces extra; see align-faces)")
    sub.set_defaults(run=cmd_manipulate)

    sub = command("align-faces", "crop and rotate face photos as the FFHQ dataset was aligned (the faces extra)",
                  examples("python lord.py align-faces -i photo.jpg -o aligned.png",
                           "python lord.py align-faces -i photos/ -o aligned/ --size 1024",
                           "python lord.py align-faces -i photo.jpg -o check.png --side-by-side"))
    sub.add_argument("-i", "--input", required=True, metavar="PATH", help="a photo, or a directory of photos")
    sub.add_argument("-o", "--output", required=True, metavar="PATH",
                     help="output PNG, or a directory (one <name>.png per photo with a face) when --input is one")
    sub.add_argument("--size", type=positive_int, default=256,
                     help="side of the aligned image in pixels (default: 256)")
    sub.add_argument("--landmarks", metavar="FILE",
                     help="dlib's shape_predictor_68_face_landmarks.dat to use instead of the packaged copy")
    sub.add_argument("--side-by-side", action="store_true",
                     help="write the photo with the face's square drawn on it beside the aligned face")
    sub.set_defaults(run=cmd_align_faces)

    sub = command("import-model", "a model directory of the published lord-pytorch or OverLORD code, as a model here",
                  examples("python lord.py import-model -i downloads/overlord-ffhq-x256-age -mn ffhq",
                           "python lord.py -bd runs import-model -i runs/cache/models/afhq -mn afhq-imported"))
    sub.add_argument("-i", "--input", "--input-dir", dest="input", required=True, metavar="DIR",
                     help="the original model directory (config.pkl, latent.pth, amortized.pth)")
    add_model_name(sub, "name of the new model directory under cache/models (not the input's own directory)")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing model of that name")
    sub.set_defaults(run=cmd_import_model)

    sub = command("info", "a model's data, label values and their names, stages done and config", examples(
        "python lord.py info -mn demo", "python lord.py -bd runs info -mn shapes --json"))
    add_model_name(sub)
    sub.add_argument("--json", action="store_true", help="print everything as one JSON object, for scripts")
    sub.set_defaults(run=cmd_info)

    sub = command("evaluate", "the papers' metrics for a trained model on preprocessed data (JSON)", examples(
        "python lord.py -bd runs evaluate -mn shapes -dn shapes-test",
        "python lord.py evaluate -mn cars3d -dn cars3d-train --stage latent -o results/cars3d-latent.json",
        "python lord.py evaluate -mn ffhq -dn ffhq-x256-age --n-pairs 500 --export translations"))
    add_model_name(sub)
    sub.add_argument("-dn", "--data-name", required=True, help="preprocessed data to evaluate on")
    sub.add_argument("--stage", choices=["latent", "amortized", "synthesis"],
                     help="stage to evaluate (default: the latest completed one)")
    sub.add_argument("-o", "--output", metavar="FILE.json",
                     help="where to write the result (default: the model dir's evaluation-<data>-<stage>.json); "
                          "an existing file is replaced only if it is an earlier result of the same model, data "
                          "and stage")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing --output file whatever it holds")
    sub.add_argument("--n-pairs", type=positive_int, default=1000, metavar="N",
                     help="translation pairs for content transfer, translation accuracy and FID (default: 1000)")
    sub.add_argument("--export", metavar="DIR",
                     help="also write the scored translations and their source images as PNG files in DIR (a new "
                          "or empty directory), in the layout of the OverLORD evaluation scripts, with index.json")
    sub.add_argument("--face", action="store_true",
                     help="also score the face metrics on data that is not a face set (they are scored on celeba, "
                          "rafd, ffhq and celebahq data anyway)")
    sub.set_defaults(run=cmd_evaluate)

    sub = command("report", "gather evaluation results into one table (markdown or CSV)", examples(
        "python lord.py -bd runs report shapes",
        "python lord.py report results/*.json --columns class_from_content,translation --format csv",
        "python lord.py report results/*.json --over-seeds"))
    sub.add_argument("paths", nargs="+", metavar="PATH",
                     help="evaluation JSON files, model directories (their evaluation*.json and eval/*.json) or "
                          "model names under the base dir")
    sub.add_argument("--format", choices=["markdown", "csv"], default="markdown",
                     help="table format (default: markdown)")
    sub.add_argument("--columns", action="append", metavar="NAMES",
                     help="columns or families to show, comma-separated, e.g. class_from_content,translation "
                          "(repeatable; default: every column some result fills)")
    sub.add_argument("--over-seeds", action="store_true",
                     help="one row per model across seeds (names ending in -s<seed>): each metric's mean and "
                          "standard deviation")
    sub.set_defaults(run=cmd_report)

    sub = command("serve", "a local web page: translate images, look at a model while it trains", examples(
        "python lord.py serve -mn demo",
        "python lord.py -bd runs serve -mn shapes --port 8080 --device cpu",
        "python lord.py -bd runs serve --host 0.0.0.0"))
    sub.add_argument("-mn", "--model-name", help="model to preselect (default: the first one)")
    sub.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 for every network)")
    sub.add_argument("--port", type=port_number, default=7860, help="port to listen on (default: 7860)")
    login = sub.add_mutually_exclusive_group()
    login.add_argument("--auth", metavar="USER:PASSWORD",
                       help="ask every client for this user and password (for a --host other than 127.0.0.1)")
    login.add_argument("--auth-file", metavar="FILE",
                       help="as --auth, read from FILE (one line USER:PASSWORD), out of sight of other users")
    sub.set_defaults(run=cmd_serve)

    sub = command("demo", "the whole pipeline on a small synthetic set, on CPU in minutes", examples(
        "python lord.py demo",
        "python lord.py -bd demo-run demo --overwrite",
        "python lord.py demo --set train.n_epochs=50 --overwrite"))
    sub.add_argument("-cf", "--config", default="lord-tiny", choices=config.names(), metavar="NAME",
                     help="configuration (default: lord-tiny)")
    sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key (repeatable), e.g. --set train.n_epochs=50")
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
