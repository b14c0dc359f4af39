"""HTML to PDF with headless Chromium (Debian's `chromium` package), for the after-action report.

The HTML is written to a private temporary folder and printed by a Chromium started for this one document
(its own profile folder, no network services, no sandbox because workers and CI run as root), killed with
its whole process group if it takes longer than the timeout. The HTML must be self-contained: the report's
print template inlines its styles and pictures and forbids every outside resource by its CSP.

Chromium is heavy (a few hundred MB and a core for seconds), so only `pdf_workers` print at once on a machine and
at most `pdf_queue` more wait, each for up to `pdf_queue_seconds`; beyond that a print is refused with 429
`pdf_busy` and Retry-After. The slots are lock files in the data directory (`flock`), so every API process on the
machine shares them and a process that dies gives its slot back.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sqlmodel import Session

from core.learning.after_action.compute import build_report
from core.learning.after_action.model import AfterActionReport
from core.learning.after_action.render import render_report_html
from core.platform.errors import BatonError
from core.platform.settings import get_settings

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


class PdfBusy(BatonError):
    """Every print slot is taken and the queue is full (or a queued print waited too long)."""

    code = "pdf_busy"
    http_status = 429


RETRY_AFTER = 30  # seconds: about two prints' time on a small machine


def _take(folder: Path, kind: str, count: int) -> int | None:
    """Lock one of `count` lock files named `kind-N` without waiting; its descriptor, or None if all are held."""
    for number in range(count):
        fd = os.open(folder / f"{kind}-{number}", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return fd
    return None


@contextlib.contextmanager
def print_slot() -> Iterator[None]:
    """Hold one of the machine's Chromium slots for the block, waiting in the queue when all are taken."""
    settings = get_settings()
    folder = settings.data_dir / "pdf-slots"
    folder.mkdir(parents=True, exist_ok=True)
    slot = _take(folder, "slot", settings.pdf_workers)
    if slot is None:
        ticket = _take(folder, "queue", settings.pdf_queue)
        if ticket is None:
            raise PdfBusy(f"{settings.pdf_workers} PDFs are being printed and {settings.pdf_queue} wait; "
                          "try again shortly", retry_after=RETRY_AFTER)
        try:
            deadline = time.monotonic() + settings.pdf_queue_seconds
            while slot is None:
                if time.monotonic() >= deadline:
                    raise PdfBusy(f"no printer was free within {settings.pdf_queue_seconds:g} s; try again shortly",
                                  retry_after=RETRY_AFTER)
                time.sleep(0.1)
                slot = _take(folder, "slot", settings.pdf_workers)
        finally:
            os.close(ticket)
    try:
        yield
    finally:
        os.close(slot)


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
    """Print a self-contained HTML document to PDF bytes, in one of the machine's print slots. Raises
    PdfUnavailable without Chromium, PdfBusy when no slot is free in time and PdfFailed when Chromium fails or
    runs past `timeout` seconds."""
    binary = chromium_path(chromium)
    with print_slot(), tempfile.TemporaryDirectory(prefix="baton-pdf-") as folder:
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
