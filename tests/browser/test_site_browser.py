"""The HTML leaderboards in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``)
driven by selenium, pages loaded from disk (``file://``).

Checked: every table shows its leaderboard's rows; clicking a header re-sorts (and again reverses); every image
loaded (``naturalWidth > 0``); no console error; the hostile model label ran no script; the protocol is on hover
and in the ``<details>``. Screenshots go to ``$BENCH_SCREENSHOT_DIR`` (else the test's tmp folder); their paths
are printed.

Without chromium, chromedriver or selenium the tests skip with the reason — except under ``$CI``, where a missing
browser fails them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bench.site_fixture import FID_PROTOCOL, HOSTILE, expected_rows, write_published

_REAL = Path(__file__).resolve().parents[2] / "leaderboards"
_INSTALL = "install the Debian packages chromium chromium-driver (apt-get install -y chromium chromium-driver) " \
           "and selenium (pip install 'selenium>=4.11')"


def _unavailable(reason: str) -> None:
    """Skips, or fails under ``$CI`` (where the browser is part of the test set-up)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (and $CI is set, so this is a failure)", pytrace=False)
    pytest.skip(reason)


def _binaries() -> tuple[str, str]:
    """(chromium, chromedriver) paths, or skip / fail naming what is missing."""
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or next((p for p in ("/usr/bin/chromedriver",) if Path(p).exists()), None)
    if chromium is None:
        missing.append("chromium")
    if driver is None:
        missing.append("chromedriver")
    if missing:
        _unavailable(f"no headless browser: {', '.join(missing)} missing; {_INSTALL}")
    return chromium, driver


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    chromium, chromedriver = _binaries()
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.binary_location = chromium
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        browser = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    except WebDriverException as err:
        _unavailable(f"chromium did not start ({str(err).splitlines()[0]}); {_INSTALL}")
    browser.set_page_load_timeout(15)
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(published folder, site folder, run folder): the fabricated ``demo`` suite, plus the real published
    ``quick`` leaderboard copied in when the checkout has it."""
    from bench.site import build_site

    root = tmp_path_factory.mktemp("browser-site")
    published = write_published(root)
    if (_REAL / "quick-results.csv").exists():
        for name in ("quick.csv", "quick.md", "quick-results.csv"):
            shutil.copy(_REAL / name, published / name)
        shutil.copytree(_REAL / "quick-samples", published / "quick-samples")
    build_site(published, root / "site")
    return published, root / "site", root / "run"


def load(driver: Any, path: Path) -> None:
    """Opens ``path`` and checks the browser logged no error and the hostile label ran no script."""
    driver.get(path.as_uri())
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
    assert driver.execute_script("return window.__pwned === undefined"), "an escaped label ran as script"


def table_rows(driver: Any) -> dict[str, int]:
    return driver.execute_script(
        "var out = {}; document.querySelectorAll('table.sortable').forEach(function (t) {"
        " out[t.id] = t.tBodies[0].rows.length; }); return out;")


def column(driver: Any, table_id: str, index: int, attribute: str | None = None) -> list[Any]:
    """Cell texts (or an attribute) of one column of a table, top to bottom, as shown now."""
    return driver.execute_script(
        "var t = document.getElementById(arguments[0]), i = arguments[1], a = arguments[2];"
        "return Array.prototype.map.call(t.tBodies[0].rows, function (r) {"
        " return a ? r.cells[i].getAttribute(a) : r.cells[i].textContent; });", table_id, index, attribute)


def header(driver: Any, table_id: str, label_start: str) -> Any:
    from selenium.webdriver.common.by import By

    return next(th for th in driver.find_elements(By.CSS_SELECTOR, f"#{table_id} thead th")
                if th.text.startswith(label_start))


def screenshot(driver: Any, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot into ``$BENCH_SCREENSHOT_DIR`` (else ``tmp_path``); prints its path."""
    folder = Path(os.environ.get("BENCH_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    height = min(int(driver.execute_script("return document.documentElement.scrollHeight")), 8000)
    driver.set_window_size(1400, max(height, 600))
    path = folder / name
    assert driver.save_screenshot(str(path)), path
    driver.set_window_size(1400, 1000)
    print(f"screenshot: {path}")
    return path


def test_every_table_shows_its_rows_and_every_image_loads(driver: Any, site: tuple[Path, Path, Path],
                                                          tmp_path: Path) -> None:
    published, root, run = site
    suites = sorted(p.stem for p in published.glob("*.csv") if not p.stem.endswith("-results"))
    rows = {s: {f"table-{t}": n for t, n in expected_rows(published / f"{s}.csv").items()} for s in suites}
    pages = [(root / "index.html", {"suites": len(suites)}), (run / "leaderboard.html", rows["demo"])]
    pages += [(root / s / "index.html", rows[s]) for s in suites]
    for page, expected in pages:
        load(driver, page)
        assert table_rows(driver) == expected, page
        images = driver.execute_script(
            "return Array.prototype.map.call(document.images, function (i) {"
            " return [i.getAttribute('src'), i.complete && i.naturalWidth > 0]; });")
        assert all(ok for _, ok in images), [src for src, ok in images if not ok]
        assert len(images) > 0 or page.name == "index.html", page
    load(driver, root / "demo" / "index.html")
    screenshot(driver, tmp_path, "site-demo.png")
    load(driver, root / "index.html")
    screenshot(driver, tmp_path, "site-index.png")


def test_clicking_a_header_resorts_the_rows(driver: Any, site: tuple[Path, Path, Path]) -> None:
    _, root, _ = site
    load(driver, root / "demo" / "index.html")
    table = "table-generation"
    assert column(driver, table, 1) == ["dcgan", "vae", HOSTILE]  # ranked by fid ↓; the label shows as text
    fid = header(driver, table, "fid")
    assert fid.get_attribute("aria-sort") == "ascending"
    header(driver, table, "model").click()
    assert column(driver, table, 1) == sorted(["dcgan", "vae", HOSTILE], key=str.lower)
    header(driver, table, "model").click()
    assert column(driver, table, 1) == sorted(["dcgan", "vae", HOSTILE], key=str.lower, reverse=True)
    fid.click()  # it was sorted ascending before the model clicks: a fresh click puts the best (lowest) first
    values = [float(v) for v in column(driver, table, 6, "data-sort")]
    assert values == sorted(values) and fid.get_attribute("aria-sort") == "ascending"
    fid.click()
    values = [float(v) for v in column(driver, table, 6, "data-sort")]
    assert values == sorted(values, reverse=True) and fid.get_attribute("aria-sort") == "descending"
    assert column(driver, table, 0) == ["3", "2", "1"]  # the rank column keeps the leaderboard's ranks


def test_protocol_on_hover_and_in_details(driver: Any, site: tuple[Path, Path, Path]) -> None:
    from selenium.webdriver.common.by import By

    _, root, _ = site
    load(driver, root / "demo" / "index.html")
    row = driver.find_element(By.CSS_SELECTOR, "#table-generation tbody tr")
    assert FID_PROTOCOL in row.get_attribute("title")
    details = driver.find_element(By.CSS_SELECTOR, "#track-generation details")
    assert not details.get_attribute("open")
    details.find_element(By.TAG_NAME, "summary").click()
    assert details.get_attribute("open") is not None and FID_PROTOCOL in details.text
