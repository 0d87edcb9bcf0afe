"""The batch record as PDF, where a renderer is installed: Chromium, headless.

Why Chromium: it is maintained, already on the machine for the console's browser tests and the
README's screenshots, and prints the very HTML page people see, so the PDF cannot drift from it
(a second layout engine such as WeasyPrint would bring Pango and its own CSS support). Without
it, the record is JSON and HTML only, and says so; nothing else depends on the PDF.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT_S = 120.0


def pdf_renderer() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def write_pdf(html: str, output: Path) -> bool:
    """False when no renderer is installed or it failed (the caller says so)."""
    browser = pdf_renderer()
    if browser is None:
        return False
    with tempfile.TemporaryDirectory(prefix="shuttled-record-") as folder:
        page = Path(folder) / "record.html"
        page.write_text(html, encoding="utf-8")
        try:
            subprocess.run(
                [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                 f"--user-data-dir={folder}/profile", f"--print-to-pdf={output}", page.as_uri()],
                capture_output=True, timeout=TIMEOUT_S, check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return False
    return output.is_file() and output.stat().st_size > 0
