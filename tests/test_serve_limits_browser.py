"""The page's limits in a real browser (Debian's chromium, Playwright, the shipped model): a login
(``--auth``), the page's own pixel limit (lower than the CLI's by default) and the per-job time
limit, each ending in a plain message. A server of its own, started as a user starts it."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from .test_serve_browser import CHROMIUM, FLAGS, PHOTO, start_server

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="Debian's chromium is not installed")
USER, PASSWORD = "alice", "wonder land:42"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from start_server(tmp_path_factory.mktemp("server"), ["--auth", f"{USER}:{PASSWORD}", "--job-time-limit", "2"])


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield page
        browser.close()


def test_the_page_asks_for_a_login_and_refuses_a_wrong_password(server, page):
    import httpx

    assert httpx.post(server["url"] + "gradio_api/call/status", json={"data": []}, timeout=10).status_code in (401, 403)
    page.goto(server["url"])
    page.wait_for_selector("input[type=password]", timeout=30000)
    assert page.locator("#run").count() == 0
    page.fill("input[type=text]", USER)
    page.fill("input[type=password]", "wrong")
    page.keyboard.press("Enter")
    page.wait_for_selector(":text('Incorrect Credentials')", timeout=10000)
    page.fill("input[type=text]", USER)
    page.fill("input[type=password]", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_selector("#run", timeout=30000)


def test_the_pages_pixel_limit_and_time_limit_end_in_plain_messages(server, page, tmp_path):
    wide = tmp_path / "wide.png"  # 2.2 MP: under upscale's limit, over the page's default
    Image.new("RGB", (2000, 1100), (90, 120, 150)).save(wide)
    photos = []
    for i in range(8):  # eight photos take longer than 2 s on any CPU
        photos.append(tmp_path / f"photo-{i}.png")
        photos[-1].write_bytes(PHOTO.read_bytes())
    page.locator("#uploads input[type=file]").set_input_files([str(wide)])
    page.wait_for_selector("#uploads :text('wide')", timeout=10000)
    page.click("#run")
    page.wait_for_selector("#message :text('Upscaled 0 of 1 file')", timeout=60000)
    assert "wide.png: 2000x1100 is more than the 2073600-pixel limit" in page.inner_text("#message")
    page.reload()
    page.wait_for_selector("#run", timeout=30000)  # the login holds across a reload
    page.locator("#speed label", has_text="Thorough").click()
    page.locator("#uploads input[type=file]").set_input_files([str(p) for p in photos])
    page.wait_for_selector("#uploads :text('photo-7')", timeout=10000)
    page.click("#run")
    page.wait_for_selector("#message :text('longer than this page allows (2 s)')", timeout=120000)
    assert "Traceback" not in page.inner_text("body")
    assert page.locator("#downloads a").count() == 0
    assert server["process"].poll() is None
