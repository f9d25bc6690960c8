"""The README's picture of the web page: `serve` on a trained model, driven by headless Chromium
through an upload, a label and a translation, then a screenshot.

    python assets/serve_screenshot.py -bd . -mn demo -dn demo-test --index 5 --label 3 -o assets/serve.png

The uploaded image is image INDEX of the preprocessed data DATA (held-out images show the encoders at
work), written as a PNG beside the screenshot's temporary files. Needs the web and test extras and
Debian's chromium and chromium-driver.
"""

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lord.assets import BaseDir  # noqa: E402
from lord.data import store  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,860"]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, what, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"error: timed out waiting for {what}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-bd", "--base-dir", default=".", help="base directory holding the model and the data")
    parser.add_argument("-mn", "--model-name", default="demo", help="model to show (default: demo)")
    parser.add_argument("-dn", "--data-name", default="demo-test", help="data to take the upload from")
    parser.add_argument("--index", type=int, default=5, help="image of the data to upload (default: 5)")
    parser.add_argument("--label", type=int, default=3, help="label value to translate to (default: 3)")
    parser.add_argument("-o", "--output", default=str(REPO / "assets" / "serve.png"), help="screenshot PNG")
    args = parser.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    data = store.load(BaseDir(args.base_dir).existing_data_path(args.data_name))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory() as scratch:
        upload = Path(scratch) / f"{args.data_name}-{args.index}.png"
        Image.fromarray(data.imgs[args.index].squeeze()).save(upload)
        server = subprocess.Popen(
            [sys.executable, str(REPO / "lord.py"), "-bd", args.base_dir, "--device", "cpu", "serve", "-mn",
             args.model_name, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
        for flag in CHROMIUM_FLAGS + [f"--user-data-dir={Path(scratch) / 'profile'}"]:
            options.add_argument(flag)
        driver = None
        try:
            wait_for(lambda: url in server.stdout.readline(), "the server")
            driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
            driver.get(url)
            wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#image input[type=file]"), "the page")
            driver.find_element(By.CSS_SELECTOR, "#image input[type=file]").send_keys(str(upload))
            wait_for(lambda: "sees it" in driver.find_element(By.ID, "status").text, "the upload")
            driver.find_element(By.CSS_SELECTOR, "#label input").click()
            options = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#label [role=option]"), "the labels")
            options[args.label].click()
            driver.find_element(By.ID, "translate").click()
            wait_for(lambda: driver.find_element(By.ID, "status").text.startswith("translated"), "the translation")
            driver.execute_script("window.scrollTo(0, 0)")
            time.sleep(1)
            driver.save_screenshot(args.output)
        finally:
            if driver is not None:
                driver.quit()
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
