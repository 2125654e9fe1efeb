"""The report in a real browser: headless Chromium opens it from disk with the network cut off, every
image must have loaded (natural width > 0), right-to-left blocks must lay out right to left, and a
screenshot is kept in the test's temp folder.

Chromium comes from the Debian package `chromium` (tests/report/install_browser.sh); without it the
test is skipped, saying so.
"""

import json
import re
import shutil
import subprocess

import pytest

# Appended to a COPY of the report: the report itself has no script. After load it writes what the
# browser saw into the page, which --dump-dom prints.
PROBE = """<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "dlkit-probe";
  out.textContent = JSON.stringify({
    images: [...document.images].map(img => [img.complete, img.naturalWidth, img.naturalHeight]),
    rtl: [...document.querySelectorAll('[dir="rtl"]')].map(el => getComputedStyle(el).direction),
    width: document.documentElement.scrollWidth,
  });
  document.body.appendChild(out);
});
</script>"""


@pytest.fixture
def browser() -> str:
    """Chromium's path; asked for before the runs are made, so a missing browser skips at once."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium not installed: run tests/report/install_browser.sh (Debian package chromium)")
    return path


def run_browser(browser: str, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=127.0.0.1:9",
    ]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=180)


def test_chromium_loads_every_image_and_takes_a_screenshot(browser, sweep, tmp_path):
    from dlkit.cli import main

    report = tmp_path / "report.html"
    assert main(["report", str(sweep), "-o", str(report)]) == 0
    html = report.read_text(encoding="utf-8")

    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = run_browser(browser, "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    found = re.search(r'<pre id="dlkit-probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"chromium printed no probe result (exit {dom.returncode}): {dom.stderr[-500:]}"
    seen = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(seen["images"]) == html.count("<img ") == 8
    assert all(complete and width > 0 and height > 0 for complete, width, height in seen["images"]), seen["images"]
    assert seen["rtl"] and set(seen["rtl"]) == {"rtl"}

    screenshot = tmp_path / "report.png"
    shot = run_browser(browser, "--window-size=1280,2400", f"--screenshot={screenshot}", report.as_uri())
    assert screenshot.is_file(), f"no screenshot (exit {shot.returncode}): {shot.stderr[-500:]}"
    from PIL import Image

    with Image.open(screenshot) as image:
        assert image.size == (1280, 2400)
        colours = image.convert("L").getextrema()
        assert colours[1] - colours[0] > 100  # something was drawn, not a blank page
    print(f"screenshot: {screenshot}")
