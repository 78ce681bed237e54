"""The web demo in headless Chromium: load the page, submit a sample video and a sentence, get an overlay video
back. Needs Debian's chromium (.ci/run installs it) and the playwright package (the 'dev' extra)."""

import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from rvos.config import load_config
from rvos.engine.checkpoint import save_model

from contract import KEEP_ALL, random_model

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the 'dev' extra)")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cfg = load_config("vlm_tiny_synth", [KEEP_ALL])
    model = random_model(cfg)  # random weights, every query passes: the masks are not empty
    path = tmp_path_factory.mktemp("model")
    save_model(path, model, cfg)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rvos.cli", "-q", "serve", "--run", str(path), "--port", str(port),
                             "--max-frames", "100"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"rvos serve exited: {proc.stdout.read()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("rvos serve did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_page_segments_a_sample_and_returns_an_overlay_video(server):
    args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page()
        page.goto(server, wait_until="networkidle")
        assert "rvos" in page.content()
        page.locator("#sentences textarea").fill("the object that moves")
        page.locator("#segment").click()
        video = page.locator("#overlay video")
        video.wait_for(state="attached", timeout=120_000)
        src = video.get_attribute("src")
        assert src and ".mp4" in src
        with urllib.request.urlopen(src if src.startswith("http") else server.rstrip("/") + src) as r:
            assert r.status == 200 and len(r.read()) > 1000
        assert page.locator("#masks a").first.get_attribute("href").endswith("masks.zip")
        assert "a mask in" in page.locator("#summary").inner_text()
        browser.close()


def test_page_explains_a_missing_sentence(server):
    args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page()
        page.goto(server, wait_until="networkidle")
        page.locator("#sentences textarea").fill("")
        page.locator("#segment").click()
        page.get_by_text("Type at least one sentence").first.wait_for(timeout=60_000)
        browser.close()
