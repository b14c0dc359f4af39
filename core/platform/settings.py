"""Baton's settings, from the environment (prefix `BATON_`) or a `.env` file; read through `get_settings()`."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import time
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, IPvAnyNetwork, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROCESS_DEFS_DIR = Path(__file__).resolve().parents[2] / "process_defs"


class Endpoint(BaseModel):
    """A department system that receives Baton's signed notices."""

    url: str
    secret: SecretStr


class Smtp(BaseModel):
    """The mail server upward reports are sent through (BATON_SMTP__HOST, __PORT, __SENDER, …)."""

    host: str
    port: int = 25
    sender: str = Field(description="The From address, e.g. the duty office's mailbox.")
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    ssl: bool = False
    timeout: float = 20.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BATON_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    data_dir: Path = Field(default=Path(".baton"), description="Where the embedded system keeps its files.")
    # Secret: a PostgreSQL URL holds the password, and settings can end up printed (a traceback, a debugger).
    database_url: SecretStr | None = Field(default=None,
                                           description="SQLAlchemy URL; default SQLite under `data_dir`.")
    prefect_api_url: str | None = Field(
        default=None, description="A Prefect server to use; unset, `baton serve` starts one of its own.")
    secret_key: SecretStr | None = Field(
        default=None, description="Signs page sessions' CSRF tokens; unset, one is made in `data_dir`.")
    token_hours: float = 8.0
    # Failed logins from one client address, over all accounts, before it must wait out the window.
    login_failures_per_source: int = 30
    login_window_seconds: float = 600.0
    # Failed logins at one account from every address before each further one locks it everywhere for a while
    # (doubling, up to 15 minutes); five from one address lock it for that address alone (core/users/service.py).
    login_failures_per_account: int = 20
    cookie_secure: bool = Field(default=False, description="Send the session cookie over HTTPS only.")
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (api/forwarded.py): addresses or
    # CIDRs, comma-separated or a JSON list. Empty: the connection's own address is the client's.
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = 1_000_000
    # Files attached to a task's form (core/attachments/): the largest accepted; the body limit of the routes that
    # take them (`POST /api/tasks/{id}/attachments`, the task page's form) is this plus `max_body_bytes`.
    attachment_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    # Monitoring signals (core/signals/intake.py): each source's sustained rate and burst; how old (or how far
    # ahead of this clock) an observation may be; how many incidents one source may open in an hour before
    # its further signals wait for the duty desk instead.
    signal_rate_per_minute: float = Field(default=30.0, gt=0)
    signal_burst: int = Field(default=10, ge=1)
    signal_max_age_seconds: float = Field(default=3600.0, gt=0)
    signal_max_ahead_seconds: float = Field(default=300.0, ge=0)
    signal_incidents_per_hour: int = Field(default=3, ge=0)
    # After-action PDFs (core/reports/pdf.py): Chromiums printing at once on this machine, requests that may
    # wait for one, and how long they wait before a 429.
    pdf_workers: int = Field(default=2, ge=1)
    pdf_queue: int = Field(default=4, ge=0)
    pdf_queue_seconds: float = Field(default=60.0, ge=0)
    plans_dir: Path = PROCESS_DEFS_DIR
    timezone: str = "Asia/Shanghai"
    # The city this Baton serves, as its public notices name it: a plan's municipal issuer (市气象台, Municipal
    # Meteorological Observatory) is issued as 杭州市气象台 / Hangzhou Municipal Meteorological Observatory.
    city_name: str | None = Field(default=None, pattern=r"^[\u4e00-\u9fff]{1,12}[市州盟区县]$")
    city_name_en: str | None = Field(default=None, pattern=r"^[A-Z][A-Za-z' -]{0,39}$")
    # A declined task (退单): the office must route it (reassign, take over, ask a leader) within this many
    # minutes, or its alert escalates (ledgered, shown red).
    decline_route_minutes: float = Field(default=15.0, gt=0)
    # An event record sheet (事件记录单) the duty leader has not reviewed within this many minutes shows overdue.
    desk_review_minutes: float = Field(default=15.0, gt=0)
    sender: str = Field(default="baton@emergency.example.gov.cn", description="CAP sender identity.")
    # The map (core/maps/): a city's own tile server, as a URL template with {z}, {x} and {y} (and {s} if it
    # names subdomains), drawn under the layers; unset, the map draws the district boundaries of
    # `map_boundaries` (a GeoJSON file; unset, Hangzhou's, shipped in core/maps/boundaries/) and needs no network.
    map_tile_url: str | None = Field(default=None, pattern=r"^https?://[^\s\"'<>]+$")
    map_tile_attribution: str | None = Field(default=None, max_length=200)
    map_boundaries: Path | None = None

    worker_id: str | None = None
    instance_name: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9_.-]{0,39}$",
        description="This Baton's name on a shared Prefect server: its flow runs are tagged instance:<name>. "
                    "Unset, it is named after its database (baton-<6 hex digits>): two systems on one Prefect server "
                    "are told apart without being configured, and one system's workers and API share the name.")
    lease_seconds: float = 15.0
    claim_interval: float = 0.1
    wake_interval: float = 0.2
    # On PostgreSQL a worker is told of new incidents and wake-ups (LISTEN/NOTIFY): while its listening connection
    # is up, its claim and wake polls are only the fallback for a notification lost, and run this often instead
    # (each poll is a transaction: at 0.1 and 0.2 s they were most of an idle worker's CPU, the bench, 2026-12-03).
    notified_poll_interval: float = Field(default=2.0, gt=0, le=60)
    # A safety net only: every change that matters wakes its incident, and deadlines set their own timeout.
    # Each re-check is one reconciliation per waiting incident; at 30 s, 1,000 waiting incidents cost 33 a
    # second, which on a small machine took a third of the CPU that handoffs needed; at 300 s, 10,000 waiting
    # incidents cost the same and kept two workers a third busy each with nothing to do (the bench, 2026-12-03).
    recheck_seconds: float = 3600.0
    worker_capacity: int = 5000
    # Incidents a worker starts at once (each start is a few Prefect API calls over a client of 16 connections): a
    # worker that claimed thousands at once would queue them all on that pool, and those waiting past its timeout
    # failed and were retried (the 10,000-incident bench, 2026-12-03).
    worker_start_concurrency: int = Field(default=8, ge=1, le=64)
    reminder_before: float = Field(default=0.2, description="Remind when this share of a deadline is left.")
    retry_delays: list[float] = Field(default=[1.0, 4.0, 15.0, 60.0])

    endpoints: dict[str, Endpoint] = Field(default_factory=dict)
    smtp: Smtp | None = Field(default=None, description="Unset, upward reports go to systems only, not by e-mail.")
    mail_addresses: dict[str, str] = Field(
        default_factory=dict, description="Registry key → e-mail address of the bodies upward reports go to.")
    # 叫应 (core/sharing/answers.py): the address officials open their answer links at (the pages' public address),
    # and how long a link stays good after it is sent.
    public_url: str = Field(default="http://127.0.0.1:8000",
                            description="Where Baton's pages are reached from outside: answer links start with it.")
    answer_link_hours: float = Field(default=24.0, gt=0)
    failpoint_dir: Path | None = Field(
        default=None, description="Fault tests only: where failpoints are armed (see core/platform/failpoints.py).")
    http_timeout: float = 10.0

    @field_validator("map_tile_url")
    @classmethod
    def _tile_template(cls, value: str | None) -> str | None:
        if value and not all(part in value for part in ("{z}", "{x}", "{y}")):
            raise ValueError("a tile URL template names {z}, {x} and {y}")
        return value or None

    def map_tile_origin(self) -> str | None:
        """The tile server's origin (scheme and host), which the pages' Content-Security-Policy lets images
        come from; None without a tile server. A `{s}` subdomain becomes a wildcard."""
        if not self.map_tile_url:
            return None
        scheme, _, rest = self.map_tile_url.partition("://")
        host = rest.split("/", 1)[0].replace("{s}", "*")
        return f"{scheme}://{host}"

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _address_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part for part in text.replace(",", " ").split() if part]
        return value

    def resolved_database_url(self) -> str:
        if self.database_url is not None and self.database_url.get_secret_value():
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'baton.db').resolve()}"

    def resolved_instance_name(self) -> str:
        """This system's name on its flow runs: as configured, else from its database (its workers and API
        processes share the database, two systems do not); a digest, so nothing of the URL's secret shows."""
        if self.instance_name:
            return self.instance_name
        digest = hashlib.sha256(self.resolved_database_url().encode("utf-8")).hexdigest()[:6]
        return f"baton-{digest}"

    def resolved_secret_key(self) -> str:
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.data_dir / "secret_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process of the system made it first
                pass
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_urlsafe(48))
        for _ in range(50):
            key = path.read_text().strip()
            if key:
                return key
            time.sleep(0.05)
        raise RuntimeError(f"{path} is empty")

    def resolved_prefect_api_url(self) -> str | None:
        return self.prefect_api_url or os.environ.get("PREFECT_API_URL") or None

    def resolved_worker_id(self) -> str:
        # A random part: a restarted container may get the same host name and pid as the worker it replaces.
        return self.worker_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


SECRETS_DIR_ENV = "BATON_SECRETS_DIR"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings: init > environment > `.env` > files in `BATON_SECRETS_DIR`.

    The folder holds one file a setting, named after its variable in lower case (`baton_secret_key`,
    `baton_database_url`, `baton_endpoints` as JSON), as Docker and Kubernetes mount secrets, so that a secret
    need not be in the environment of every process that could print it."""
    folder = os.environ.get(SECRETS_DIR_ENV)
    if not folder:
        return Settings()
    if not Path(folder).is_dir():
        raise RuntimeError(f"{SECRETS_DIR_ENV}={folder} is not a folder")
    return Settings(_secrets_dir=folder)
