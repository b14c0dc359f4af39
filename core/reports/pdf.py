"""HTML to PDF with headless Chromium (Debian's `chromium` package), for the after-action report.

The HTML is written to a private temporary folder and printed by a Chromium started for this one document
(its own profile folder, no network services, no sandbox because workers and CI run as root), killed with
its whole process group if it takes longer than the timeout. The HTML must be self-contained: the report's
print template inlines its styles and pictures and forbids every outside resource by its CSP.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from sqlmodel import Session

from core.learning.after_action.compute import build_report
from core.learning.after_action.model import AfterActionReport
from core.learning.after_action.render import render_report_html
from core.platform.errors import BatonError

DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ENV = "BATON_CHROMIUM"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-dev-shm-usage",
         "--no-pdf-header-footer", "--mute-audio", "--hide-scrollbars")
# Chromium logs D-Bus and GPU complaints on a headless server; they say nothing about the document.
NOISE = ("dbus", "Fontconfig", "gpu", "GPU", "unexpected operator", "bytes written to file")


class PdfUnavailable(BatonError):
    """No Chromium to print with: install Debian's `chromium` or point BATON_CHROMIUM at one."""

    code = "pdf_unavailable"
    http_status = 503


class PdfFailed(BatonError):
    code = "pdf_failed"
    http_status = 500


def _runnable(path: str) -> bool:
    return Path(path).is_file() and os.access(path, os.X_OK)


def chromium_path(explicit: str | None = None) -> str:
    """The Chromium to use: `explicit`, else $BATON_CHROMIUM, else /usr/bin/chromium, else `chromium` on PATH."""
    chosen = explicit or os.environ.get(CHROMIUM_ENV)
    if chosen:
        if _runnable(chosen):
            return chosen
        raise PdfUnavailable(f"Chromium not found at {chosen}: cannot print the PDF")
    if _runnable(DEFAULT_CHROMIUM):
        return DEFAULT_CHROMIUM
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    raise PdfUnavailable(f"Chromium is not installed ({DEFAULT_CHROMIUM} is missing; on Debian: apt-get install "
                         f"chromium fonts-wqy-microhei, or set {CHROMIUM_ENV}): cannot print the PDF")


def _tail(text: str, limit: int = 1500) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not any(n in line for n in NOISE)]
    return "\n".join(lines)[-limit:]


def html_to_pdf(html: str, *, chromium: str | None = None, timeout: float = 60.0) -> bytes:
    """Print a self-contained HTML document to PDF bytes. Raises PdfUnavailable without Chromium and
    PdfFailed when it fails or runs past `timeout` seconds."""
    binary = chromium_path(chromium)
    with tempfile.TemporaryDirectory(prefix="baton-pdf-") as folder:
        root = Path(folder)
        source, target, profile = root / "report.html", root / "report.pdf", root / "profile"
        source.write_text(html, encoding="utf-8")
        # A home of its own: Chromium writes caches and crash reports there, never into the service user's home.
        env = {**os.environ, "HOME": str(root), "XDG_CONFIG_HOME": str(root / "config"),
               "XDG_CACHE_HOME": str(root / "cache")}
        command = [binary, *FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={target}", source.as_uri()]
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, cwd=root, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            _kill_group(proc)
            raise PdfFailed(f"Chromium did not print the PDF within {timeout:g} s") from exc
        finally:
            # Chromium leaves helper processes behind now and then; they are in its own process group.
            _kill_group(proc)
        data = target.read_bytes() if target.exists() else b""
        if proc.returncode != 0 or not data.startswith(b"%PDF"):
            detail = _tail((err or b"").decode("utf-8", "replace") + (out or b"").decode("utf-8", "replace"))
            raise PdfFailed(f"Chromium could not print the PDF (exit {proc.returncode})" + (f": {detail}" if detail
                                                                                          else ""))
        return data


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(timeout=10)


def report_pdf(session: Session, *, incident_id: str, lang: str = "zh", chromium: str | None = None,
               timeout: float = 60.0) -> tuple[AfterActionReport, bytes]:
    """The incident's after-action report and its PDF."""
    report = build_report(session, incident_id=incident_id)
    return report, html_to_pdf(render_report_html(report, lang), chromium=chromium, timeout=timeout)
