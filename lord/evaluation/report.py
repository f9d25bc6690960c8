"""Gather evaluation results into one table, one row per result, in the style of a paper's table.

An evaluation result is a JSON object with `model`, `data`, `stage`, `seed`, `version` and one entry
per metric family (null where the family does not apply). Nested entries become dotted columns
(`class_from_content.mlp`, `content_transfer.baseline_unchanged.ssim`, ...). Numbers are printed with
4 significant digits (accuracies as fractions in [0, 1]), integers as they are, null as "-".
"""

import csv
import io
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from lord.assets import BaseDir, read_json, validate_name
from lord.errors import UserError

IDENTITY_COLUMNS = ("model", "data", "stage")
REQUIRED_KEYS = ("model", "data", "stage", "seed", "version")
IMAGE_ERRORS = ("perceptual", "mse", "ssim", "lpips")
PROBES = ("logistic", "mlp", "chance")
METRIC_COLUMNS = (
    *(f"class_from_content.{key}" for key in PROBES),
    *(f"content_from_class.{key}" for key in PROBES),
    *(f"content_transfer.{key}" for key in IMAGE_ERRORS),
    *(f"content_transfer.baseline_unchanged.{key}" for key in IMAGE_ERRORS),
    *(f"content_transfer.baseline_random_same_class.{key}" for key in IMAGE_ERRORS),
    "content_transfer.n_pairs",
    "reconstruction.perceptual",
    "reconstruction.mse",
    "translation.target_class_accuracy",
    "translation.source_class_accuracy",
    "translation.classifier_accuracy",
    "fid",
    "fid_paper",
    "lpips_diversity",
    "face.landmarks",
    "face.identity",
    *(f"face.head_pose.{angle}" for angle in ("yaw", "pitch", "roll")),
    "face.n_failed",
)
HIDDEN_BY_DEFAULT = ("seed", "version")
FORMATS = ("markdown", "csv")


def is_evaluation_result(obj):
    return isinstance(obj, dict) and all(key in obj for key in REQUIRED_KEYS)


def _read_result(path):
    result = read_json(path, "evaluation result")
    if not is_evaluation_result(result):
        keys = ", ".join(REQUIRED_KEYS)
        raise UserError(f"{path} is not an evaluation result (expected a JSON object with {keys})")
    return result


def _files_in(directory):
    return sorted(directory.glob("evaluation*.json")) + sorted((directory / "eval").glob("*.json"))


def _resolve(path, base_dir):
    """A path as given, else a model name under <base-dir>/cache/models."""
    path = Path(path)
    if path.exists() or base_dir is None:
        return path
    try:
        candidate = BaseDir(base_dir).model_dir(validate_name(str(path)))
    except UserError:
        return path
    return candidate if candidate.is_dir() else path


def load_results(paths, base_dir=None):
    """Evaluation results from JSON files and from model directories, in the order given.

    A directory contributes its `evaluation*.json` files and the `*.json` files of its `eval/`
    subdirectory, sorted by name. With `base_dir`, a bare model name stands for its model directory.
    """
    results = []
    for given in paths:
        path = _resolve(given, base_dir)
        if path.is_dir():
            files = _files_in(path)
            if not files:
                raise UserError(f"no evaluation results in {path} (looked for evaluation*.json and eval/*.json)")
            results += [_read_result(file) for file in files]
        elif path.is_file():
            results.append(_read_result(path))
        else:
            raise UserError(f"no such evaluation file or model directory: {given}")
    return results


def _flatten_into(columns, prefix, value):
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten_into(columns, f"{prefix}.{key}" if prefix else str(key), inner)
    elif value is None and any(column.startswith(prefix + ".") for column in columns):
        return
    else:
        columns[prefix] = value


def flatten(result):
    """Column name -> value, identity columns first, then every known metric column (None where a
    family is null or absent, so rows of different models line up), then any further entries."""
    columns = {key: None for key in (*IDENTITY_COLUMNS, *HIDDEN_BY_DEFAULT, *METRIC_COLUMNS)}
    _flatten_into(columns, "", result)
    return columns


@dataclass(frozen=True)
class Spread:
    """A metric over several seeds: its mean and sample standard deviation."""

    mean: float
    deviation: float


def seedless_name(result):
    """The model name without the `-s<seed>` suffix of the seed it was evaluated with, as the
    reproduction scripts name one model per seed (`syn-lord-s2` with seed 2 -> `syn-lord`)."""
    suffix = f"-s{result['seed']}"
    name = str(result["model"])
    return name[: -len(suffix)] if name.endswith(suffix) and len(name) > len(suffix) else name


def over_seeds(results):
    """One row per (model less its seed suffix, data, stage): each numeric metric as its mean and
    spread over those results, `seeds` their number; a metric some of them lack is left empty."""
    groups = {}
    for result in results:
        row = flatten(result)
        groups.setdefault((seedless_name(result), row["data"], row["stage"]), []).append(row)
    rows = []
    for (model, data, stage), members in groups.items():
        row = {"model": model, "data": data, "stage": stage, "seeds": len(members)}
        for column in members[0]:
            if column in row or column in HIDDEN_BY_DEFAULT:
                continue
            values = [member.get(column) for member in members]
            numeric = all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values)
            row[column] = None
            if numeric:
                deviation = statistics.stdev(values) if len(values) > 1 else 0.0
                row[column] = Spread(statistics.fmean(values), deviation)
        rows.append(row)
    return rows


def format_value(value):
    if value is None:
        return "-"
    if isinstance(value, Spread):
        return f"{format_value(value.mean)} ± {value.deviation:.2g}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return " ".join(format_value(item) for item in value)
    return str(value)


def _select_columns(rows, requested):
    available = list(dict.fromkeys(column for row in rows or [flatten({})] for column in row))
    leading = [column for column in (*IDENTITY_COLUMNS, "seeds") if column in available]
    if requested is None:
        return [
            column for column in available
            if column in leading
            or (column not in HIDDEN_BY_DEFAULT and any(row.get(column) is not None for row in rows))
        ]
    names = [name.strip() for item in requested for name in str(item).split(",") if name.strip()]
    selected = list(leading)
    for name in names:
        matches = [column for column in available if column == name or column.startswith(name + ".")]
        if not matches:
            raise UserError(f"unknown column {name!r}; available: {', '.join(available)}")
        selected += [column for column in matches if column not in selected]
    return selected


def format_table(results, columns=None, fmt="markdown", seeds=False):
    """The table of `results` (evaluation results) as markdown or CSV.

    The identity columns (model, data, stage) always come first; with `seeds`, one row per model
    across its seeds (see `over_seeds`), with the number of seeds next. Then, without `columns`, every
    metric column that some row fills; with `columns`, those named: a column or a family (standing
    for all its columns, e.g. `content_transfer`); an item may hold several names separated by commas.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown table format {fmt!r}; expected one of {', '.join(FORMATS)}")
    rows = over_seeds(results) if seeds else [flatten(result) for result in results]
    selected = _select_columns(rows, columns)
    cells = [[format_value(row.get(column)) for column in selected] for row in rows]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(selected)
        writer.writerows(cells)
        return buffer.getvalue()
    numeric = [
        all(isinstance(row.get(column), (int, float, Spread)) or row.get(column) is None for row in rows)
        and column not in IDENTITY_COLUMNS
        for column in selected
    ]
    lines = [
        _markdown_row(selected),
        _markdown_row(["---:" if is_numeric else "---" for is_numeric in numeric]),
        *(_markdown_row(row) for row in cells),
    ]
    return "\n".join(lines) + "\n"


def _markdown_row(cells):
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def report(paths, columns=None, fmt="markdown", base_dir=None, seeds=False):
    """The `report` command: the table of every evaluation result found at `paths` (with `seeds`,
    their means and spreads over seeds)."""
    return format_table(load_results(paths, base_dir), columns, fmt, seeds)
