"""The run and sweep pages opened from the file system in a real browser (headless Chromium through Selenium).

Skipped where Chromium or its driver is absent (Debian: `apt-get install chromium chromium-driver`; `.ci/run`
installs them) or where Selenium is (the `test` extra).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cnn_zoo.train import train
from tests.conftest import FAST

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="browser tests need Chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)",
)
ONE_BATCH = ["trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]
QUIET = ["+trainer.enable_progress_bar=false", "callbacks.rich_progress_bar=null", "callbacks.model_summary=null"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the `test` extra)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1600",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def open_page(browser: Any, page: Path) -> list[dict[str, Any]]:
    """Load `page` from the file system; returns its images (alt, complete, natural size); no console errors."""
    browser.get_log("browser")  # what an earlier page left
    browser.get(page.resolve().as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    images = browser.execute_script(
        "return Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, "
        "width: i.naturalWidth, height: i.naturalHeight}))"
    )
    assert images, "the page shows no image"
    for image in images:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
    remote = browser.execute_script(
        "return Array.from(document.querySelectorAll('[src],[href]')).map(e => e.src || e.href)"
        ".filter(u => /^(https?:)?\\/\\//.test(u))"
    )
    assert remote == []  # works offline: nothing is fetched
    return images


def ids(browser: Any) -> set[str]:
    return set(browser.execute_script("return Array.from(document.querySelectorAll('[id]')).map(e => e.id)"))


def test_run_page_in_a_browser(browser: Any, compose_cfg, mnist_root: Path, tmp_path: Path) -> None:
    cfg = compose_cfg(
        f"paths.data_dir={mnist_root}", "data.download=false", "data.val_size=60", "data.batch_size=32", *FAST,
        *ONE_BATCH,
    )  # fmt: skip
    metrics = train(cfg)
    images = open_page(browser, tmp_path / "run" / "report.html")
    assert {"curves-figure", "confusion-matrix", "test-metrics", "per-class", "data-counts", "links"} <= ids(browser)
    assert any("learning curves" in image["alt"] for image in images)
    assert any("confusion matrix" in image["alt"] for image in images)
    classes = browser.execute_script("return document.querySelectorAll('#per-class tr').length")
    assert classes == 1 + 10  # header and one row per digit
    acc = browser.execute_script(
        "return Array.from(document.querySelectorAll('#test-metrics tr')).find(r => r.cells[0].textContent == 'acc')"
        ".cells[1].textContent"
    )
    assert float(acc) == pytest.approx(metrics["test/acc"], abs=1e-4)
    links = browser.execute_script("return Array.from(document.querySelectorAll('#links a')).map(a => a.textContent)")
    assert "checkpoints/last.ckpt" in links


def test_sweep_page_in_a_browser(browser: Any, mnist_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    env = {**os.environ, "CNN_ZOO_DATA_DIR": str(mnist_root)}
    command = [
        sys.executable, "-m", "cnn_zoo.train", "-m", "model=lenet,mnist_cnn", f"hydra.sweep.dir={sweep}",
        "data.download=false", "data.val_size=60", "data.batch_size=32", "trainer.max_epochs=2",
        "trainer.accelerator=cpu", "callbacks.misclassified=null", *ONE_BATCH, *QUIET,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    open_page(browser, sweep / "report.html")
    assert {"jobs", "curves-figure", "best"} <= ids(browser)
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('#jobs tbody tr')).map(r => ({job: r.dataset.job, "
        "model: r.querySelector('td.override').textContent, folder: r.cells[r.cells.length - 1].textContent}))"
    )
    assert rows == [
        {"job": "0", "model": "lenet", "folder": "0_model=lenet"},
        {"job": "1", "model": "mnist_cnn", "folder": "1_model=mnist_cnn"},
    ]
    assert browser.execute_script("return document.querySelectorAll('#jobs tr.best').length") == 1
    header = browser.execute_script("return document.querySelector('#jobs th')")
    header.click()
    header.click()  # the job column, descending
    order = browser.execute_script("return [...document.querySelectorAll('#jobs tbody tr')].map(r => r.dataset.job)")
    assert order == ["1", "0"]
    # each job's own page is linked, and opens as well
    open_page(browser, sweep / "0_model=lenet" / "report.html")
