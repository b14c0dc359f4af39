"""Secrets sealed at rest (core/platform/sealing.py): what is stored is not the secret, reads back as it was, a value
stored before sealing still reads, and one sealed under another instance's secret key reads as empty, named in the
log without the value."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from core.platform.sealing import PREFIX, seal, unseal
from core.platform.settings import get_settings


@pytest.fixture
def secret_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("BATON_SECRET_KEY", "a-test-instance-key-0123456789-abcdefghij")
    get_settings.cache_clear()
    yield "a-test-instance-key-0123456789-abcdefghij"
    get_settings.cache_clear()


def test_a_sealed_value_is_not_the_secret_and_reads_back_as_it_was(secret_key: str) -> None:
    secret = "SECsign-钉钉-secret-value-5432"
    stored = seal(secret)
    assert stored.startswith(PREFIX) and secret not in stored
    assert seal(secret) != stored, "each sealing is fresh (a random IV): equal secrets are not seen as equal"
    assert unseal(stored) == secret
    assert seal(stored) == stored, "sealing twice does not nest"
    assert seal("") == "" and unseal("") == ""


def test_a_value_stored_before_sealing_reads_as_it_is(secret_key: str) -> None:
    assert unseal("plain-legacy-token") == "plain-legacy-token"


def test_a_value_sealed_under_another_key_reads_as_empty_and_is_named_in_the_log(
        secret_key: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    secret = "wecom-robot-key-secret-9876"
    stored = seal(secret)
    monkeypatch.setenv("BATON_SECRET_KEY", "another-instance-key-9876543210-zyxwvutsrq")
    get_settings.cache_clear()
    with caplog.at_level(logging.WARNING, logger="baton.sealing"):
        assert unseal(stored) == ""
    assert "cannot be opened" in caplog.text and secret not in caplog.text
