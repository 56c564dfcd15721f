"""Open a local HTML file in a real headless Chromium and report what a person's browser would show.

Used by the HTML report tests (audit.html, report.html). It drives the system Chromium through Python
`playwright` (never `playwright install`: that downloads a browser). Network is blocked: any request that is not
`file:`/`data:`/`about:` is aborted and recorded, so a report that needs a CDN fails its test.

    from browser import open_html, browser_skip_reason   # tests/ is on sys.path under pytest (conftest)
    with open_html(path) as view:
        assert view.errors == [] and view.external_requests == []
        view.page.locator("svg[data-plot] rect.bar").count()

System packages (Debian/Ubuntu): `apt-get install -y chromium` (gives /usr/bin/chromium).
Python: `pip install playwright`.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("SHIPSFT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:")


def browser_skip_reason() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    if not CHROMIUM.exists():
        found = shutil.which("chromium")
        hint = f" (found {found}; set SHIPSFT_CHROMIUM)" if found else ""
        return f"{CHROMIUM} is missing{hint}: apt-get install -y chromium"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "python package 'playwright' is missing: pip install playwright (never `playwright install`)"
    return None


@dataclass
class PageView:
    page: Any  # playwright.sync_api.Page, open on the file
    errors: list[str] = field(default_factory=list)  # console errors and uncaught page exceptions
    warnings: list[str] = field(default_factory=list)  # console warnings
    external_requests: list[str] = field(default_factory=list)  # blocked non-local requests

    def count(self, selector: str) -> int:
        return self.page.locator(selector).count()

    def attrs(self, selector: str, name: str) -> list[str | None]:
        return self.page.locator(selector).evaluate_all(f"els => els.map(e => e.getAttribute({name!r}))")


@contextmanager
def open_html(path: str | Path, width: int = 1280, height: int = 900, timeout_ms: int = 20_000) -> Iterator[PageView]:
    """Load `path` (fully, including late console errors) and yield a PageView; closes the browser after."""
    from playwright.sync_api import sync_playwright

    url = Path(path).resolve().as_uri()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            view = PageView(page)

            def on_console(msg):
                if msg.type == "error":
                    view.errors.append(f"console: {msg.text}")
                elif msg.type == "warning":
                    view.warnings.append(msg.text)

            def on_route(route):
                if route.request.url.startswith(LOCAL_SCHEMES):
                    route.continue_()
                else:
                    view.external_requests.append(route.request.url)
                    route.abort()

            page.on("console", on_console)
            page.on("pageerror", lambda exc: view.errors.append(f"page error: {exc}"))
            page.route("**/*", on_route)
            page.goto(url, wait_until="load", timeout=timeout_ms)
            page.wait_for_timeout(100)  # let deferred scripts log
            yield view
        finally:
            browser.close()
