"""The runtime.compile switch: which modules every stage hands to torch.compile, and one real compile."""

import json
import shutil

import pytest
import torch

from conftest import CLI, overlord_set_args, set_args


@pytest.fixture
def compile_calls(monkeypatch):
    """Records the modules passed to torch.compile and hands them back uncompiled (fast)."""
    calls = []

    def record(module, *args, **kwargs):
        calls.append(type(module).__name__)
        return module

    monkeypatch.setattr(torch, "compile", record)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")  # a compiler, as far as the check sees
    return calls


@pytest.mark.parametrize("switch", ["true", "false", "auto"])
def test_lord_stages_compile_their_networks_only_when_asked(base_with_data, compile_calls, switch):
    base = str(base_with_data)
    assert CLI.main(["-bd", base, "-q", "train", "-dn", "syn", "-mn", "m", "-cf", "lord-tiny",
                     *set_args("train.n_epochs=1", f"runtime.compile={switch}")]) == 0
    latent_calls = list(compile_calls)
    assert CLI.main(["-bd", base, "-q", "train-encoders", "-dn", "syn", "-mn", "m",
                     "--set", "train_encoders.n_epochs=1"]) == 0
    amortized_calls = compile_calls[len(latent_calls):]
    if switch in ("false", "auto"):  # auto: torch.compile was measured slower for LORD's stages on a CPU
        assert compile_calls == []
    else:
        # the decoder (generator with its class embedding) and the loss; then encoders+generator and the loss
        assert latent_calls == ["ClassConditionedGenerator", "PixelLoss"]
        assert amortized_calls == ["EncodeAndGenerate", "PixelLoss"]


@pytest.mark.parametrize("switch", ["true", "auto"])
def test_overlord_stages_compile_their_networks(synthetic32_base, tmp_path, compile_calls, switch):
    base = tmp_path / "base"
    shutil.copytree(synthetic32_base, base)
    sets = overlord_set_args("none", f"runtime.compile={switch}", "synthesis.n_epochs=1")
    for command in ("train", "train-encoders", "train-synthesis"):
        extra = ["-cf", "overlord-tiny", *sets] if command == "train" else []
        assert CLI.main(["-bd", str(base), "-q", command, "-dn", "syn32", "-mn", "o", *extra]) == 0
    # stage 1: generator and loss; stage 2: the encoders; stage 3: the generator and the loss (the
    # discriminator stays eager for the double backward of R1)
    if switch == "auto":  # on a CPU only stage 1 was measured faster compiled
        assert compile_calls == ["LabelConditionedGenerator", "PixelLoss"]
    else:
        assert compile_calls == ["LabelConditionedGenerator", "PixelLoss", "Encoders", "Generator",
                                 "PixelLoss"]


def test_compile_takes_true_false_or_auto_and_nothing_else():
    from lord.configuration import apply_overrides
    from lord.errors import UserError

    import config as presets

    base = presets.get_config("lord-tiny")
    assert base["runtime"]["compile"] is False
    for text, value in (("auto", "auto"), ("true", True), ("false", False)):
        assert apply_overrides(base, [f"runtime.compile={text}"])["runtime"]["compile"] == value
    for text in ("maybe", "1", "null"):
        with pytest.raises(UserError, match=r"expected true or false \(or auto\)"):
            apply_overrides(base, [f"runtime.compile={text}"])


def test_a_compiled_stage_compiles_once_even_with_a_smaller_last_batch(synthetic32_base, tmp_path, monkeypatch):
    """Traced by dynamo for real (its eager backend: no code generation), with recompiling made an
    error: 96 images in batches of 20 end every epoch with a batch of 16, which runs eagerly."""
    import functools

    import torch._dynamo

    base = tmp_path / "base"
    shutil.copytree(synthetic32_base, base)
    torch._dynamo.reset()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    monkeypatch.setattr(torch._dynamo.config, "error_on_recompile", True)
    sets = overlord_set_args("none", "runtime.compile=auto", "disentanglement.batch_size=20")
    try:
        assert CLI.main(["-bd", str(base), "-q", "train", "-dn", "syn32", "-mn", "o", "-cf", "overlord-tiny",
                         *sets]) == 0
    finally:
        torch._dynamo.reset()
    records = [json.loads(line) for line in (base / "cache" / "models" / "o" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(record["loss"] > 0 for record in records)


@pytest.mark.skipif(not any(shutil.which(name) for name in ("g++", "c++", "clang++")),
                    reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_training_matches_eager_training(base_with_data):
    """A real torch.compile of stage 1 (inductor, C++ on the CPU) trains like the eager modules."""
    losses = {}
    for switch in ("false", "true"):
        assert CLI.main(["-bd", str(base_with_data), "-q", "--seed", "3", "train", "-dn", "syn", "-mn", f"m-{switch}",
                         "-cf", "lord-tiny", *set_args("train.n_epochs=1", f"runtime.compile={switch}")]) == 0
        lines = (base_with_data / "cache" / "models" / f"m-{switch}" / "metrics.jsonl").read_text().splitlines()
        losses[switch] = json.loads(lines[-1])["loss"]
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-3)


def test_compile_without_a_cpp_compiler_is_one_clear_error(base_with_data, run_cli, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    result = run_cli("-bd", base_with_data, "train", "-dn", "syn", "-mn", "m", "-cf", "lord-tiny",
                     *set_args("train.n_epochs=1", "runtime.compile=true"))
    assert result.code != 0
    assert len(result.err_lines) == 1 and "needs a C++ compiler" in result.err_lines[0]
    assert not (base_with_data / "cache" / "models" / "m").exists()


def test_auto_without_a_cpp_compiler_trains_eagerly(monkeypatch):
    from lord.training.common import compile_wanted

    cpu = torch.device("cpu")
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert compile_wanted({"compile": "auto"}, "overlord", "latent", cpu)
    assert not compile_wanted({"compile": "auto"}, "lord", "latent", cpu)
    assert not compile_wanted({"compile": "auto"}, "overlord", "latent", torch.device("cuda"))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert not compile_wanted({"compile": "auto"}, "overlord", "latent", cpu)
    assert compile_wanted({"compile": True}, "lord", "latent", cpu)  # true asks, and then says what is missing
