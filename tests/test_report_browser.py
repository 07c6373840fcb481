"""The report in a real headless browser: pages load without console errors, render non-blank.

Needs Debian's chromium. Where it is missing, it is installed only when
ENDPOINTC_INSTALL_BROWSER=1 (CI sets it); otherwise, or when installing fails, the test skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from endpointc.report import build_report

from test_report import tiny


CHROMIUM = "/usr/bin/chromium"
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--no-first-run")


def _browser() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("ENDPOINTC_INSTALL_BROWSER") != "1":
        pytest.skip("chromium is not installed (set ENDPOINTC_INSTALL_BROWSER=1 to install it)")
    if shutil.which("apt-get") is None:
        pytest.skip("chromium is missing and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:
            pytest.skip(f"could not install chromium ({' '.join(command)} exited {done.returncode})")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium was installed but /usr/bin/chromium is missing")
    return CHROMIUM


def _run(browser: str, profile: Path, page: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [browser, *_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *extra,
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)


def _console(stderr: str) -> list[str]:
    # Chromium logs every console message as "...:CONSOLE:<line>] ..."; the report logs none.
    return [line for line in stderr.splitlines()
            if ":CONSOLE" in line or "Uncaught" in line or "ERROR:CONSOLE" in line]


def _screenshot(browser: str, tmp: Path, page: Path, name: str, height: int = 900):
    png = tmp / f"{name}.png"
    done = _run(browser, tmp / f"profile-{name}", page, f"--screenshot={png}", f"--window-size=1200,{height}")
    assert png.exists(), done.stderr[-2000:]
    return png, _console(done.stderr)


def _ink(png: Path) -> tuple[float, int]:
    """Share of pixels that are not the page background, and the number of distinct colours."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=float).reshape(-1, 3) / 255
    background = pixels[0]
    ink = float((abs(pixels - background).sum(axis=1) > 0.05).mean())
    colours = len({tuple(p) for p in (pixels[:: max(1, len(pixels) // 20000)] * 255).astype(int).tolist()})
    return ink, colours


@pytest.fixture(scope="module")
def browser():
    return _browser()


def test_pages_render_without_console_errors(browser, tmp_path):
    program, events, people, files = tiny()
    site = tmp_path / "site"
    build_report(program, events, people, site, files=files)

    # The check can fail: a page with a script error is caught.
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><p>x</p><script>notAFunction();</script></body></html>")
    _, messages = _screenshot(browser, tmp_path, broken, "broken")
    assert any("Uncaught" in m for m in messages)

    for page, name, height in ((site / "index.html", "index", 900),
                               (site / "endpoints" / "MI.html", "endpoint", 2400)):
        png, messages = _screenshot(browser, tmp_path, page, name, height)
        assert messages == [], messages
        ink, colours = _ink(png)
        assert ink > 0.01 and colours > 8, (name, ink, colours)

    # The search/filter script ran: it shows the filter box and counts the rows.
    dom = _run(browser, tmp_path / "profile-dom", site / "index.html", "--dump-dom")
    assert _console(dom.stderr) == []
    assert '<div id="filters">' in dom.stdout
    assert "2 of 2 endpoints shown" in dom.stdout
