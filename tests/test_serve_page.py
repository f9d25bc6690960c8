"""`lord.py serve` end to end: the real server on a free local port, driven by a headless Chromium
through upload, label choice and translation (compared with `manipulate`), a bad upload, the Model tab
following a run, several clients at once and Ctrl-C.

Where Chromium, chromedriver or the web extra is missing these tests are skipped, except under CI
(CI=true), which installs them. LORD_SCREENSHOT=PATH keeps the browser's screenshot of the translated
page (the README's)."""

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from lord import serve
from lord.assets import BaseDir, lock_path
from lord.data import store
from lord.inference import load_model



def unavailable(reason, whole_module=False):
    """Skip what needs something not installed here; under CI, which installs it, fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI should have installed it: {reason}")
    pytest.skip(reason, allow_module_level=whole_module)


try:
    import gradio  # noqa: F401
except ImportError:
    unavailable("the web extra is not installed: pip install -e .[web]", whole_module=True)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,860"]
WAIT = 60


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def model_files(base, name):
    return sorted((str(path), path.stat().st_size, path.stat().st_mtime_ns)
                  for path in BaseDir(base).model_dir(name).rglob("*"))


class Server:
    """`python lord.py serve` in a child process, its output collected by a thread."""

    def __init__(self, base, tmp_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp_path / "gradio"), "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "lord.py"), "-bd", str(base), "--device", "cpu", "serve", "-mn", "lord",
             "--port", str(self.port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.out, self.err = [], []
        self.readers = [threading.Thread(target=self.collect, args=(stream, lines), daemon=True)
                        for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err))]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def collect(stream, lines):
        for line in stream:
            lines.append(line)

    def wait_until_serving(self):
        deadline = time.monotonic() + 120
        while not any(self.url in line for line in self.out):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"serve did not start: {''.join(self.out)}{''.join(self.err)}")
            time.sleep(0.2)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for reader in self.readers:
            reader.join(timeout=5)


@pytest.fixture(scope="module")
def served(serve_base, overlord_models, tmp_path_factory):
    """A copy of the shared LORD base dir, which these tests change, with an OverLORD model (pose-invariant
    correlation) and its data, and `doomed`, a copy of `lord` to delete while the page is open."""
    base = tmp_path_factory.mktemp("served")
    shutil.copytree(serve_base, base, dirs_exist_ok=True)
    paths, overlord = BaseDir(base), BaseDir(overlord_models)
    shutil.copytree(overlord.model_dir("pose-invariant"), paths.model_dir("overlord"))
    shutil.copy(overlord.data_path("syn32"), paths.data_path("syn32"))
    shutil.copytree(paths.model_dir("lord"), paths.model_dir("doomed"))
    data = store.load(paths.data_path("syn32"))
    Image.fromarray(data.imgs[1]).save(base / "uploads" / "reference32.png")
    return base


@pytest.fixture(scope="module")
def server(served, tmp_path_factory):
    running = Server(served, tmp_path_factory.mktemp("serve"))
    try:
        running.wait_until_serving()
        yield running
    finally:
        running.stop()


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None or CHROMEDRIVER is None:
        unavailable("no Chromium and chromedriver to drive (Debian: apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is not installed: pip install -e .[test]")

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def wait_for(condition, what):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def picture_of(driver, element_id):
    """The pixels of the image an output component shows, fetched from the page's own URL."""
    from selenium.webdriver.common.by import By

    source = wait_for(lambda: [image.get_attribute("src") for image in driver.find_elements(By.CSS_SELECTOR,
                                                                                            f"#{element_id} img")],
                      f"an image in #{element_id}")[0]
    with urllib.request.urlopen(source, timeout=WAIT) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())))


def text_of(driver, element_id):
    """The text an element shows; empty while the page has not drawn it yet."""
    from selenium.webdriver.common.by import By

    return " ".join(element.text for element in driver.find_elements(By.ID, element_id))


def status_text(driver):
    return text_of(driver, "status")


def test_page_translates_like_manipulate(server, browser, served, tmp_path, run_cli):
    from selenium.webdriver.common.by import By

    uploads = served / "uploads"
    before = model_files(served, "lord")
    browser.get(server.url)
    wait_for(lambda: "3 label values" in text_of(browser, "model-info"), "the model's description")
    browser.find_element(By.CSS_SELECTOR, "#image input[type=file]").send_keys(str(uploads / "wide.png"))
    wait_for(lambda: "as lord sees it" in status_text(browser), "the upload's preview")
    browser.find_element(By.CSS_SELECTOR, "#label input").click()
    options = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#label [role=option]"), "the label list")
    assert [option.get_attribute("aria-label") for option in options] == ["0: alpha", "1: beta", "2: gamma"]
    options[2].click()
    browser.find_element(By.ID, "translate").click()
    wait_for(lambda: status_text(browser).startswith("translated"), "the translation")
    assert "label 2 (gamma)" in status_text(browser)

    manipulate = ["-bd", served, "-q", "manipulate", "-mn", "lord", "-i", uploads / "wide.png"]
    assert run_cli(*manipulate, "--label", "2", "-o", tmp_path / "label.png").code == 0
    assert run_cli(*manipulate, "-o", tmp_path / "strip.png").code == 0
    written = np.asarray(Image.open(tmp_path / "label.png"))
    np.testing.assert_array_equal(picture_of(browser, "translation"), written[:, 16:32])
    np.testing.assert_array_equal(picture_of(browser, "model-input"), written[:, :16])
    np.testing.assert_array_equal(picture_of(browser, "strip"), np.asarray(Image.open(tmp_path / "strip.png")))
    if os.environ.get("LORD_SCREENSHOT"):
        browser.save_screenshot(os.environ["LORD_SCREENSHOT"])

    browser.find_element(By.CSS_SELECTOR, "#image button[aria-label=Clear]").click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#image input[type=file]"), "an empty upload field")
    browser.find_element(By.CSS_SELECTOR, "#image input[type=file]").send_keys(str(uploads / "notes.txt"))
    wait_for(lambda: "not an image file" in status_text(browser), "the bad upload's message")
    browser.find_element(By.ID, "translate").click()
    wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, "#translation img"), "the translation to clear")
    assert status_text(browser) == "error: image 'notes.txt' is not an image file that can be read"
    assert model_files(served, "lord") == before
    assert server.process.poll() is None
    elsewhere = [entry["message"] for entry in browser.get_log("browser")
                 if re.search(r"https?://(?!127\.0\.0\.1[:/])", entry["message"])]
    assert elsewhere == [], "the page asked for something outside this machine"


def displayed(driver, element_id):
    from selenium.webdriver.common.by import By

    return any(element.is_displayed() for element in driver.find_elements(By.ID, element_id))


def test_model_tab_follows_a_run(server, browser, served):
    from selenium.webdriver.common.by import By

    browser.get(server.url)
    tab = wait_for(lambda: [button for button in browser.find_elements(By.CSS_SELECTOR, "button[role=tab]")
                            if button.text.strip() == "Model"], "the Model tab")[0]
    tab.click()
    wait_for(lambda: "stage 2, amortized encoders: done" in text_of(browser, "overview"), "the overview of lord")
    browser.find_element(By.CSS_SELECTOR, "#overview-model input").click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#overview-model [aria-label=latent-only]"),
             "the model list")[0].click()
    wait_for(lambda: "stage 2, amortized encoders: not started" in text_of(browser, "overview"),
             "the overview of latent-only")
    assert displayed(browser, "losses-latent-0") and displayed(browser, "samples-latent")
    assert not displayed(browser, "losses-amortized-0")

    model_dir = BaseDir(served).model_dir("latent-only")
    record = json.loads((model_dir / "metrics.jsonl").read_text().splitlines()[0])
    with open(model_dir / "metrics.jsonl", "a") as metrics:
        metrics.write(json.dumps({"stage": "amortized", "epoch": 1, "loss": 0.25, "reconstruction": 0.2,
                                  "seconds": record["seconds"]}) + "\n")
    lock_path(model_dir).write_text("4242 trainer-host 0\n")
    wait_for(lambda: "stage 2, amortized encoders: epoch 1 of" in text_of(browser, "overview"), "the refresh")
    assert "a training run holds the model's lock" in text_of(browser, "overview")
    wait_for(lambda: displayed(browser, "losses-amortized-1"), "the stage 2 loss curves")
    assert not displayed(browser, "losses-amortized-2")


def client_for(server, folder):
    from gradio_client import Client

    return Client(server.url, verbose=False, analytics_enabled=False, download_files=str(folder))


def ask_page(client, model_name, image, label=None, reference=None):
    """The page's translate call as a script makes it: (status, input, translation, strip)."""
    from gradio_client import handle_file

    def upload(path):
        return None if path is None else handle_file(str(path))

    target = "a label value" if reference is None else "a reference image"
    return client.predict(model_name, upload(image), target, label, upload(reference), api_name="/translate")


def test_several_clients_each_get_their_own_result(server, served, tmp_path, run_cli):
    uploads = served / "uploads"
    lord = load_model(served, "lord", device="cpu")
    overlord = load_model(served, "overlord", device="cpu")
    requests = [
        ("lord", uploads / "wide.png", 0, None), ("lord", uploads / "gray.jpg", 1, None),
        ("lord", uploads / "wide.png", None, uploads / "reference.png"),
        ("overlord", uploads / "gray.jpg", None, uploads / "reference32.png"),
    ]
    results = [None] * len(requests)

    def ask(index):
        results[index] = ask_page(client_for(server, tmp_path / str(index)), *requests[index])

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT * 2)
    for (name, image, label, reference), result in zip(requests, results):
        assert result is not None and result[0].startswith(f"translated '{image.name}'"), result
        model = lord if name == "lord" else overlord
        channels = model.img_shape[-1]
        if reference is None:
            expected = serve.translate(model, serve.read_upload(image, channels), label=label)
        else:
            expected = serve.translate(model, serve.read_upload(image, channels),
                                       reference=serve.read_upload(reference, channels))
        np.testing.assert_array_equal(np.asarray(Image.open(result[2])), expected.translation)
    out = tmp_path / "overlord.png"
    assert run_cli("-bd", served, "-q", "manipulate", "-mn", "overlord", "-i", uploads / "gray.jpg", "-r",
                   uploads / "reference32.png", "-o", out).code == 0
    np.testing.assert_array_equal(np.asarray(Image.open(results[3][2])), np.asarray(Image.open(out)))


def test_a_model_deleted_while_the_page_is_open(server, served, tmp_path):
    client = client_for(server, tmp_path)
    image = served / "uploads" / "wide.png"
    assert ask_page(client, "doomed", image, label=1)[0].startswith("translated")
    shutil.rmtree(BaseDir(served).model_dir("doomed"))
    status, *pictures = ask_page(client, "doomed", image, label=1)
    assert status.startswith("error: no model named 'doomed'") and pictures == [None, None, None]
    assert ask_page(client, "lord", image, label=1)[0].startswith("translated")
    assert ask_page(client, "../lord", image, label=1)[0].startswith("error: invalid model name")


def test_a_port_in_use_is_one_line(served, run_cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("-bd", served, "serve", "--port", port)
    assert result.code == 1 and len(result.err_lines) == 1, result
    assert result.err_lines[0].startswith(f"error: cannot serve on 127.0.0.1:{port}")


def test_ctrl_c_stops_the_server(server):
    server.stop()
    assert server.process.returncode == 0, "".join(server.err)
    assert server.out[-1] == "stopped\n" and "Traceback" not in "".join(server.err)
