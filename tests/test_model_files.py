"""Checksummed weight files and checkpoints, damaged model configs, whole short names, and the page's login."""

import json
import random
import shutil

import pytest
import torch

from conftest import set_args
from lord import serve
from lord.assets import CHECKSUM_TRAILER, BaseDir, save_torch, validate_name
from lord.errors import UserError
from lord.model import checkpoint_path, load_stage, load_tensors, weights_path


@pytest.fixture(scope="module")
def trained(synthetic_base, tmp_path_factory):
    """A base dir with `m`: lord-tiny, one epoch of stage 1, with its final checkpoint."""
    from conftest import CLI

    base = tmp_path_factory.mktemp("model-files")
    shutil.copytree(synthetic_base, base, dirs_exist_ok=True)
    assert CLI.main(["-bd", str(base), "-q", "--device", "cpu", "train", "-dn", "syn", "-mn", "m", "-cf", "lord-tiny",
                     *set_args("train.n_epochs=1")]) == 0
    return base


@pytest.fixture
def copy_of(trained, tmp_path):
    """A fresh copy of the trained base dir."""
    target = tmp_path / "base"
    shutil.copytree(trained, target)
    return target


def strip_checksum(path):
    """The file as the previous version wrote it: without the trailer."""
    data = path.read_bytes()
    path.write_bytes(data[:-CHECKSUM_TRAILER])


def test_any_changed_byte_is_found_before_unpickling(tmp_path):
    path = tmp_path / "checkpoint-latent.pt"
    save_torch(path, {"rng": {"numpy_pos": 624}, "weights": torch.arange(2000.0)})
    pristine = path.read_bytes()
    draw = random.Random(0)
    for _ in range(20):
        damaged = bytearray(pristine)
        for position in draw.sample(range(len(damaged)), 3):
            damaged[position] ^= 1 + draw.randrange(255)
        path.write_bytes(bytes(damaged))
        with pytest.raises(UserError, match=r"^damaged: checkpoint file .* does not match its checksum; use the "
                                            r"previous checkpoint or --overwrite$"):
            load_tensors(path, "checkpoint")
    path.write_bytes(pristine)
    assert torch.equal(load_tensors(path, "checkpoint")["weights"], torch.arange(2000.0))
    assert torch.load(path, weights_only=True)["rng"] == {"numpy_pos": 624}  # plain torch.load reads it too


def test_resume_from_a_damaged_checkpoint_is_one_line(copy_of, run_cli):
    path = checkpoint_path(BaseDir(copy_of).model_dir("m"), "latent")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    result = run_cli("-bd", copy_of, "-q", "train", "-dn", "syn", "-mn", "m", "--resume")
    assert result.code == 1 and len(result.err_lines) == 1 and result.err_lines[0].startswith("error: damaged: ")
    assert str(path) in result.err and "--overwrite" in result.err


def test_files_of_the_previous_version_still_load(copy_of, run_cli):
    model_dir = BaseDir(copy_of).model_dir("m")
    expected = load_tensors(weights_path(model_dir, "latent"))
    strip_checksum(weights_path(model_dir, "latent"))
    strip_checksum(checkpoint_path(model_dir, "latent"))
    module = load_stage(model_dir, "latent")
    assert all(torch.equal(module.state_dict()[key], value) for key, value in expected.items())
    result = run_cli("-bd", copy_of, "-q", "train", "-dn", "syn", "-mn", "m", "--resume")
    assert result.code == 0, result


def test_a_previous_version_checkpoint_with_a_damaged_rng_state_is_one_line(copy_of, run_cli):
    path = checkpoint_path(BaseDir(copy_of).model_dir("m"), "latent")
    state = torch.load(path, weights_only=True)
    state["rng"]["python"][5] = 2**80
    torch.save(state, path)
    result = run_cli("-bd", copy_of, "-q", "train", "-dn", "syn", "-mn", "m", "--resume")
    assert result.code == 1 and len(result.err_lines) == 1, result
    assert "damaged: checkpoint file" in result.err and "cannot be restored" in result.err


def test_weights_with_nan_are_refused_where_a_model_is_loaded(copy_of, run_cli, tmp_path):
    path = weights_path(BaseDir(copy_of).model_dir("m"), "latent")
    state = load_tensors(path)
    state["generator.modulation.linear.weight"][0, 0] = float("nan")
    save_torch(path, state)
    with pytest.raises(UserError, match="generator.modulation.linear.weight holds NaN"):
        load_stage(BaseDir(copy_of).model_dir("m"), "latent")


# --------------------------------------------------------------------------- damaged config.json


def rewrite_config(base, change):
    path = BaseDir(base).model_dir("m") / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps(change(config)))


DAMAGED_CONFIGS = [
    ("a-list", lambda config: [config], "holds a list"),
    ("no-data", lambda config: {key: value for key, value in config.items() if key != "data"}, "no `data` block"),
    ("img-shape-strings", lambda config: {**config, "data": {**config["data"], "img_shape": ["a", 2, 3]}},
     "data.img_shape"),
    ("n-images-huge", lambda config: {**config, "data": {**config["data"], "n_images": 10**12}}, "GiB of weights"),
    ("dims-a-string", lambda config: {**config, "content_dim": "eight"}, "cannot build"),
]


STRUCTURAL = [case[1] for case in DAMAGED_CONFIGS[:3]]


@pytest.mark.parametrize("change, message", [case[1:] for case in DAMAGED_CONFIGS],
                         ids=[case[0] for case in DAMAGED_CONFIGS])
def test_a_damaged_config_is_one_line_from_manipulate_and_a_message_in_the_page(copy_of, run_cli, tmp_path, change,
                                                                                message):
    rewrite_config(copy_of, change)
    image = next((copy_of / "cache").rglob("*.png"))
    result = run_cli("-bd", copy_of, "manipulate", "-mn", "m", "-i", image, "-o", tmp_path / "out.png")
    assert result.code == 1 and len(result.err_lines) == 1 and message in result.err, result
    assert "config.json" in result.err
    with pytest.raises(UserError, match="config.json"):
        serve.ModelCache(copy_of, "cpu").get("m")
    if change in STRUCTURAL:  # the Model tab shows the other configs; building their networks is refused
        with pytest.raises(UserError, match="config.json"):
            serve.model_overview(copy_of, "m", {})


# ---------------------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["m\n", "m\r", "a" * 101, "é", "m\nrm"])
@pytest.mark.parametrize("command", [
    ["train", "-dn", "syn", "-cf", "lord-tiny"], ["train-encoders", "-dn", "syn"], ["import-model", "-i", "."],
    ["manipulate", "-i", ".", "-o", "out.png"], ["evaluate", "-dn", "syn"], ["serve"],
])
def test_names_must_match_whole_and_be_short(copy_of, run_cli, command, name):
    before = sorted(copy_of.rglob("*"))
    result = run_cli("-bd", copy_of, *command, "-mn", name)
    assert result.code == 1 and len(result.err_lines) == 1 and "invalid model name" in result.err, result
    assert sorted(copy_of.rglob("*")) == before


def test_a_name_of_100_characters_is_fine():
    assert validate_name("a" * 100) == "a" * 100
    with pytest.raises(UserError, match="at most 100"):
        validate_name("a" * 101)


def test_the_page_refuses_bad_names(copy_of):
    for name in ("m\n", "a" * 101):
        with pytest.raises(UserError, match="invalid model name"):
            serve.ModelCache(copy_of, "cpu").get(name)
        assert serve.overview_signature(copy_of, name) is None


# ---------------------------------------------------------------------------------------- serve


class StopAtFirstSleep:
    """Stands for the time module in lord.serve: its serving loop's first sleep runs `check`, then stops the
    server as Ctrl-C does."""

    def __init__(self, check):
        self.check = check

    def sleep(self, seconds):
        self.check()
        raise KeyboardInterrupt


class FakePage:
    """Stands for the Gradio page: records how it was launched."""

    def __init__(self):
        self.launched = None

    def launch(self, **options):
        self.launched = options
        return None, "http://address", None

    def close(self):
        pass


@pytest.mark.parametrize("host, login, warned", [
    ("0.0.0.0", [], "anyone who can reach this address"),
    ("0.0.0.0", ["--auth", "ana:secret:with:colons"], "every client must log in"),
    ("192.168.1.5", ["--auth-file", "{auth_file}"], "every client must log in"),
    ("127.0.0.1", [], None),
    ("::1", ["--auth", "ana:secret:with:colons"], None),
])
def test_serving_beyond_this_machine_warns_and_asks_for_a_login(copy_of, run_cli, tmp_path, monkeypatch, host, login,
                                                               warned):
    (tmp_path / "auth").write_text("ana:secret:with:colons\n")
    page = FakePage()
    monkeypatch.setattr(serve, "build_page", lambda *args, **kwargs: page)
    monkeypatch.setattr(serve, "time", StopAtFirstSleep(lambda: None))
    login = [item.format(auth_file=tmp_path / "auth") for item in login]
    result = run_cli("-bd", copy_of, "-q", "serve", "--host", host, *login)
    assert result.code == 0, result
    assert page.launched["server_name"] == host
    assert page.launched["auth"] == (("ana", "secret:with:colons") if login else None)
    if warned:
        assert len(result.err_lines) == 1 and result.err_lines[0].startswith("warning: serving on")
        assert warned in result.err
    else:
        assert result.err == ""


@pytest.mark.parametrize("login, message", [
    (["--auth", "nopassword"], "expected USER:PASSWORD"),
    (["--auth", ":secret"], "expected USER:PASSWORD"),
    (["--auth-file", "/dev/zero"], "not a regular file"),
    (["--auth-file", "/nonexistent"], "missing --auth-file"),
])
def test_a_bad_login_is_one_line(copy_of, run_cli, login, message):
    result = run_cli("-bd", copy_of, "serve", "--host", "0.0.0.0", *login)
    assert result.code == 1 and len(result.err_lines) == 1 and message in result.err, result


def test_without_the_login_the_page_answers_nothing(copy_of, run_cli, monkeypatch):
    """The real page, served beyond loopback's default with --auth: Gradio refuses its config to a client
    that has not logged in, and a wrong password."""
    import http.cookiejar
    import socket
    import urllib.error
    import urllib.parse
    import urllib.request

    pytest.importorskip("gradio")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    answers = {}

    def status(opener, path, form=None):
        data = None if form is None else urllib.parse.urlencode(form).encode()
        try:
            return opener.open(url + path, data=data, timeout=30).status
        except urllib.error.HTTPError as error:
            return error.code

    def check():
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        answers["config"] = status(opener, "config")
        answers["wrong"] = status(opener, "login", {"username": "ana", "password": "wrong"})
        answers["right"] = status(opener, "login", {"username": "ana", "password": "secret"})
        answers["config after login"] = status(opener, "config")

    monkeypatch.setattr(serve, "time", StopAtFirstSleep(check))
    result = run_cli("-bd", copy_of, "-q", "--device", "cpu", "serve", "--port", port, "--auth", "ana:secret")
    assert result.code == 0, result
    assert answers == {"config": 401, "wrong": 400, "right": 200, "config after login": 200}
