"""The demo command end to end, with the models shrunk so it runs in seconds."""

import json
import shlex
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import CLI, set_args
from lord.assets import BaseDir
from lord.data import store, synthetic


def test_demo_runs_the_whole_pipeline(tmp_path, run_cli):
    args = ["-bd", tmp_path, "demo", *set_args("train.n_epochs=1", "train_encoders.n_epochs=1")]
    result = run_cli(*args)
    assert result.code == 0, result
    base = BaseDir(tmp_path)
    for name in ("demo", "demo-train", "demo-test"):
        assert base.data_path(name).is_file()
    rendered, test = store.load(base.data_path("demo")), store.load(base.data_path("demo-test"))
    assert len(rendered) == 24 * synthetic.N_CONTENTS // 8 and len(test) == len(rendered) // 2
    assert rendered.n_classes == 24 and len(np.unique(rendered.contents)) == synthetic.N_CONTENTS // 8
    assert sorted(set(synthetic.content_factors(rendered.contents)["rotation"].tolist())) == [0]
    model_dir = base.model_dir("demo")
    for name in ("config.json", "latent.pt", "amortized.pt", "metrics.jsonl", "demo-translation.png",
                 "evaluation-demo-test-amortized.json"):
        assert (model_dir / name).is_file()
    evaluation = json.loads((model_dir / "evaluation-demo-test-amortized.json").read_text())
    assert evaluation["data"] == "demo-test" and evaluation["stage"] == "amortized"
    assert evaluation["content_transfer"]["perceptual"] is None and evaluation["content_transfer"]["lpips"] is None
    assert "warning" not in result.err
    translation = evaluation["translation"]
    assert f"classified as the class source's class {translation['target_class_accuracy']:.3f}" in result.out
    assert "leakage probes" in result.out  # the evaluation's own summary
    stages = [json.loads(line)["stage"] for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    assert stages == ["latent", "amortized"]
    grid = np.asarray(Image.open(model_dir / "demo-translation.png"))
    assert grid.ndim == 3 and grid.shape[0] > 4 * 9 * 32 and grid.shape[1] > 4 * 9 * 32  # 8 x 8 cells, headers, x4
    assert "demo finished in" in result.out and str(model_dir / "demo-translation.png") in result.out
    assert "final latent losses" in result.out and "final amortized losses" in result.out
    command = shlex.split(result.out.strip().splitlines()[-1].split(": ", 1)[1])
    assert command[:2] == ["python", "lord.py"]
    serve_args = CLI.build_parser().parse_args(command[2:])
    assert serve_args.run is CLI.cmd_serve and Path(serve_args.base_dir) == tmp_path
    assert serve_args.model_name == "demo"

    again = run_cli(*args)
    assert again.code != 0 and "--overwrite" in again.err and len(again.err_lines) == 1
