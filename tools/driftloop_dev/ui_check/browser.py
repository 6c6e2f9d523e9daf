"""A logged-in headless Chromium page on the Airflow UI (Debian's chromium, playwright's driver)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from driftloop_dev.ui_check.constants import CHROMIUM, CHROMIUM_ARGS


class _Browser:
    """A logged-in Chromium page on the Airflow UI; screenshots go to ``out_dir``."""

    def __init__(self, page, out_dir: Path, timeout_s: float):
        self.page = page
        self.out_dir = out_dir
        self.timeout_ms = timeout_s * 1000

    def goto(self, url: str) -> None:
        self.page.goto(url, wait_until="domcontentloaded", timeout=self.timeout_ms)
        self.settle()

    def settle(self) -> None:
        """Let the single-page app fetch and render (network idle; bounded)."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

        # Polling pages (running tasks) never go idle: the bounded wait timing out is expected;
        # any other browser error is real and propagates.
        with contextlib.suppress(PlaywrightTimeoutError):
            self.page.wait_for_load_state("networkidle", timeout=min(self.timeout_ms, 15000))

    def text(self) -> str:
        return self.page.evaluate("() => document.body ? document.body.innerText : ''")

    def wait_text(self, text: str, timeout_ms: float | None = None) -> None:
        self.page.get_by_text(text, exact=False).first.wait_for(
            state="visible", timeout=timeout_ms or self.timeout_ms
        )

    def dags_not_listed(self, dag_ids) -> list[str]:
        """The DAGs whose link does not appear on the page shown (the DAG list)."""
        missing = []
        for dag_id in dag_ids:
            try:
                self.page.locator(f'a[href$="/dags/{dag_id}"]').first.wait_for(
                    state="visible", timeout=self.timeout_ms
                )
            except Exception:
                missing.append(dag_id)
        return missing

    def shot(self, name: str, *, full_page: bool = False) -> str:
        path = self.out_dir / name
        self.page.screenshot(path=str(path), full_page=full_page)
        return str(path)


def launch_chromium(playwright, executable: str = CHROMIUM):
    if not Path(executable).exists():
        raise FileNotFoundError(
            f"{executable} not found: install Debian's chromium (`make system-deps` as root)"
        )
    return playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
