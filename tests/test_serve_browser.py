"""``adadiffsr serve`` in a real browser: Debian's chromium driven by Playwright, the shipped model.

One server (a subprocess, as a user starts it) for the module, in an empty working folder with
its own TMPDIR, so the tests can check that nothing is written outside its workspace and that the
workspace is gone when the server stops. Skipped where chromium is not installed (``.ci/run``
installs it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).parents[1]
PHOTO = ROOT / "assets" / "coffee-lr.png"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="Debian's chromium is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("uploads")
    small = folder / "small.png"
    Image.open(PHOTO).convert("RGB").crop((20, 10, 68, 42)).save(small)  # 48x32 -> 192x128
    broken = folder / "broken.png"
    broken.write_bytes(PHOTO.read_bytes()[:300])
    notes = folder / "notes.txt"
    notes.write_text("not an image")
    heavy = folder / "heavy.png"  # over the server's 1 MB upload limit
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (700, 700, 3), dtype=np.uint8)).save(heavy)
    wide = folder / "wide.png"  # over the server's pixel limit
    Image.new("RGB", (400, 300), (90, 60, 30)).save(wide)
    bomb = folder / "bomb.png"  # 74 bytes that claim 100000x100000 pixels

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
                     + chunk(b"IEND", b""))
    long_job = []  # copies of the photo: a job that is still running when a closed tab is noticed, on fast CPUs too
    for i in range(4):
        long_job.append(folder / f"photo-{i}.png")
        long_job[-1].write_bytes(PHOTO.read_bytes())
    return {"small": small, "broken": broken, "notes": notes, "heavy": heavy, "wide": wide, "bomb": bomb,
            "photo": PHOTO, "long_job": long_job}


def start_server(base: Path, options: list[str]):
    """``adadiffsr serve`` as a user starts it, in ``base/cwd`` with ``base/tmp`` as its TMPDIR; yields
    its ``url``, ``process``, ``cwd``, ``tmp`` and ``log``, and stops it with SIGTERM afterwards."""
    cwd, tmp = base / "cwd", base / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    port = _free_port()
    env = {**os.environ, "TMPDIR": str(tmp), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "GRADIO_HEARTBEAT_INTERVAL": "3"}  # a closed tab is noticed within 3 s, not Gradio's 15 s
    command = [sys.executable, "-m", "adadiffsr", "serve", "--port", str(port), *options]
    log = open(base / "server.log", "w")
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    import httpx

    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the server did not start: {(base / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield {"url": url, "process": process, "cwd": cwd, "tmp": tmp, "log": base / "server.log"}
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from start_server(tmp_path_factory.mktemp("server"), ["--max-file-size", "1mb", "--max-pixels", "100000",
                                                                "--queue-size", "16"])


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


def _open(browser, server, requests: list[str] | None = None):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    if requests is not None:
        page.on("request", lambda r: requests.append(r.url))
    page.goto(server["url"])
    page.wait_for_selector("#run", timeout=30000)
    return page


def _upload_and_run(page, paths: list[Path]) -> None:
    page.locator("#uploads input[type=file]").set_input_files([str(p) for p in paths])
    page.wait_for_selector(f"#uploads :text('{paths[-1].stem}')", timeout=10000)
    page.click("#run")


def _status(server) -> dict[str, int]:
    from gradio_client import Client

    return Client(server["url"], verbose=False).predict(api_name="/status")


def test_a_person_uploads_runs_compares_and_downloads(server, browser, files, tmp_path):
    requests: list[str] = []
    page = _open(browser, server, requests)
    _upload_and_run(page, [files["small"], files["broken"]])
    page.wait_for_selector("#message :text('Upscaled 1 of 2 files')", timeout=60000)
    message = page.inner_text("#message")
    assert "broken.png: corrupt or truncated image" in message and "/tmp" not in message
    assert page.locator("#compare img").count() == 2  # before and after, on the slider
    step_map = page.locator("#step-map img")
    assert step_map.count() == 1 and step_map.evaluate("img => img.naturalWidth") >= 192
    summary = page.inner_text("#summary")
    assert "48x32 -> 192x128" in summary and "tile evaluations" in summary and "realesrgan-x4plus" in summary
    with page.expect_download() as download:
        page.locator("#downloads a[download='small_x4.png']").click()
    saved = tmp_path / "small_x4.png"
    download.value.save_as(saved)
    with Image.open(saved) as image:
        assert image.size == (192, 128) and image.format == "PNG"
    outside = {u.split("/")[2] for u in requests if "://" in u and not u.startswith(("data:", "blob:"))}
    assert outside == {server["url"].split("/")[2]}  # the page requests nothing from any other host
    page.close()


def test_bad_uploads_show_one_sentence_and_the_server_goes_on(server, browser, files):
    page = _open(browser, server)
    page.locator("#uploads input[type=file]").set_input_files([str(files["notes"])])
    page.wait_for_selector(":text('Invalid file type: notes.txt')", timeout=10000)
    page.locator("#uploads input[type=file]").set_input_files([str(files["heavy"])])
    page.wait_for_selector(":text('exceed the maximum allowed size')", timeout=10000)
    _upload_and_run(page, [files["wide"], files["broken"], files["bomb"]])
    page.wait_for_selector("#message :text('Upscaled 0 of 3 files')", timeout=60000)
    message = page.inner_text("#message")
    assert "wide.png: 400x300 is more than the 100000-pixel limit" in message
    assert "bomb.png: 100000x100000 is more than the 100000-pixel limit" in message
    assert "Traceback" not in page.inner_text("body")
    page.reload()
    page.wait_for_selector("#run", timeout=30000)
    _upload_and_run(page, [files["small"]])
    page.wait_for_selector("#message :text('Upscaled 1 of 1 file')", timeout=60000)
    assert server["process"].poll() is None
    page.close()


def test_a_waiting_job_shows_its_place_and_a_closed_tab_frees_the_running_one(server, browser, files):
    before = _status(server)["stopped_jobs"]
    page = _open(browser, server)
    page.locator("#speed label", has_text="Thorough").click()
    _upload_and_run(page, files["long_job"])  # one photo finished before the close was noticed on a fast CPU
    page.wait_for_selector(":text('tile evaluations')", timeout=60000)  # the progress bar is moving
    second = _open(browser, server)
    _upload_and_run(second, [files["small"]])
    second.wait_for_selector(":text('queue: 1/1')", timeout=10000)  # its place in the queue
    page.close()
    deadline = time.monotonic() + 60  # the heartbeat notices the close, then the job stops at its next step
    while _status(server)["stopped_jobs"] == before:
        assert time.monotonic() < deadline, "the closed tab's job kept running"
        time.sleep(0.5)
    second.wait_for_selector("#message :text('Upscaled 1 of 1 file')", timeout=30000)  # the queue moved on
    second.close()


def test_the_stop_button_ends_the_job_and_the_next_one_runs(server, browser, files):
    before = _status(server)["stopped_jobs"]
    page = _open(browser, server)
    page.locator("#speed label", has_text="Thorough").click()
    _upload_and_run(page, [files["photo"]])
    page.wait_for_selector(":text('tile evaluations')", timeout=60000)
    page.click("#stop")
    deadline = time.monotonic() + 30
    while _status(server)["stopped_jobs"] == before:
        assert time.monotonic() < deadline, "Stop did not end the job"
        time.sleep(0.5)
    page.locator("#speed label", has_text="Fast").click()
    page.locator("#uploads input[type=file]").set_input_files([str(files["small"])])
    page.wait_for_selector("#uploads :text('small')", timeout=10000)
    page.click("#run")  # a second upload adds to the first
    page.wait_for_selector("#message :text('Upscaled 2 of 2 files')", timeout=60000)
    assert "the prior (compact-prior-x4" in page.inner_text("#summary")  # Fast: the compact prior, then the student
    assert page.locator("#downloads a[download='adadiffsr-results.zip']").count() == 1
    page.close()


def test_eight_jobs_at_once_finish_in_order_with_memory_bounded(server, files, tmp_path):
    import httpx
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    client = Client(server["url"], verbose=False, download_files=str(tmp_path))
    args = ("balanced", "standard", 0, "none", 0)
    client.predict([handle_file(str(files["small"]))], *args, api_name="/upscale")  # warm
    rss_warm = _rss_mb(server["process"].pid)
    jobs = []
    for k in range(8):  # all 8 wait together; each is in the queue before the next is sent, so the order is known
        jobs.append(client.submit([handle_file(str(files["small"]))], "balanced", ("standard", "fast")[k % 2], k,
                                  "none", 0, api_name="/upscale"))
        deadline = time.monotonic() + 10
        while jobs[-1].status().code in (Status.STARTING, Status.JOINING_QUEUE) and time.monotonic() < deadline:
            time.sleep(0.01)
    finished: dict[int, float] = {}
    results: dict[int, tuple] = {}

    def wait(k: int) -> None:
        results[k] = jobs[k].result(timeout=120)
        finished[k] = time.monotonic()

    waiters = [threading.Thread(target=wait, args=(k,)) for k in range(8)]
    for w in waiters:
        w.start()
    latencies, peak = [], rss_warm
    while any(w.is_alive() for w in waiters):
        start = time.monotonic()
        assert httpx.get(server["url"], timeout=10).status_code == 200
        latencies.append(time.monotonic() - start)
        peak = max(peak, _rss_mb(server["process"].pid))
        time.sleep(0.2)
    for w in waiters:
        w.join()
    assert sorted(finished, key=finished.get) == list(range(8))  # one at a time, first come first served
    assert all(results[k][0] == "Upscaled 1 of 1 file." for k in range(8))
    assert max(latencies) < 2.0  # the page answers while the queue works
    assert peak - rss_warm < 400  # MB: one model in memory, jobs do not pile up
    print(f"8 jobs: page latency max {max(latencies):.3f} s, RSS {rss_warm:.0f} -> peak {peak:.0f} MB")


def test_nothing_is_written_outside_the_workspace_and_it_is_removed(server, files):
    """Last in the module: stop the server as Ctrl-C or a service manager would."""
    workspaces = list(server["tmp"].glob("adadiffsr-serve-*"))
    assert len(workspaces) == 1 and any(workspaces[0].rglob("*.png"))
    assert list(server["cwd"].iterdir()) == []
    stray = [p for p in server["tmp"].rglob("*") if p.is_file() and workspaces[0] not in p.parents]
    assert stray == []  # libraries may leave empty folders at import; no file lies outside the workspace
    server["process"].send_signal(signal.SIGTERM)
    server["process"].wait(timeout=30)
    assert not workspaces[0].exists()
    assert list(server["cwd"].iterdir()) == []
