"""Two Baton systems on one Prefect server are told apart without being configured: each tags its flow runs
`instance:<name>`, named by default after its database (which its workers and API processes share)."""

from __future__ import annotations

import re

from pydantic import SecretStr

from core.platform.settings import Settings


def test_a_systems_default_name_follows_its_database_and_shows_nothing_of_its_address() -> None:
    city = Settings(database_url=SecretStr("postgresql+psycopg://baton:s3cret@db-city/baton"))
    district = Settings(database_url=SecretStr("postgresql+psycopg://baton:s3cret@db-district/baton"))
    again = Settings(database_url=SecretStr("postgresql+psycopg://baton:s3cret@db-city/baton"))
    assert re.fullmatch(r"baton-[0-9a-f]{6}", city.resolved_instance_name())
    assert city.resolved_instance_name() != district.resolved_instance_name()
    assert city.resolved_instance_name() == again.resolved_instance_name()  # its other processes: the same name
    assert "s3cret" not in city.resolved_instance_name() and "db-city" not in city.resolved_instance_name()
    named = Settings(database_url=SecretStr("postgresql+psycopg://baton:s3cret@db-city/baton"),
                     instance_name="city-a")
    assert named.resolved_instance_name() == "city-a"
