"""Baton's settings, from the environment (prefix `BATON_`) or a `.env` file; read through `get_settings()`."""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROCESS_DEFS_DIR = Path(__file__).resolve().parent.parent / "process_defs"


class Endpoint(BaseModel):
    """A department system that receives Baton's signed notices."""

    url: str
    secret: SecretStr


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BATON_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    home: Path = Field(default=Path(".baton"), description="Where the embedded system keeps its files.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite under `home`.")
    plans_dir: Path = PROCESS_DEFS_DIR
    timezone: str = "Asia/Shanghai"
    sender: str = Field(default="baton@emergency.example.gov.cn", description="CAP sender identity.")

    worker_id: str | None = None
    lease_seconds: float = 15.0
    claim_interval: float = 0.25
    wake_interval: float = 0.2
    recheck_seconds: float = 30.0
    worker_capacity: int = 5000
    reminder_before: float = Field(default=0.2, description="Remind when this share of a deadline is left.")
    retry_delays: list[float] = Field(default=[1.0, 4.0, 15.0, 60.0])

    endpoints: dict[str, Endpoint] = Field(default_factory=dict)
    http_timeout: float = 10.0

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'baton.db').resolve()}"

    def resolved_worker_id(self) -> str:
        return self.worker_id or f"{socket.gethostname()}-{os.getpid()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
