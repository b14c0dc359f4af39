"""Bad input against the API's own OpenAPI schema (`app.openapi()`), with schemathesis, sent to the app in
process (schemathesis' ASGI transport): every operation, as every role (and nobody), with valid and invalid
data (negative mode: wrong types, missing and extra fields, malformed bodies), on random and on real path
parameters.

Each response must not be a 5xx, and each 4xx must carry the error format `{"error": {"code", "message"}}`, its
message in the language its Content-Language declares.
The one 5xx allowed is the PDF report's 503 `pdf_unavailable` on a machine without Chromium.
Examples per operation, role and mode are bounded (SCHEMATHESIS_EXAMPLES, default 3; one for nobody, who
gets no further than the login check) so the whole run takes a couple of minutes; failures are collected, not
shrunk, and listed together.
"""

from __future__ import annotations

import functools
import io
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from api.app import app
from core.attachments import service as attachments
from core.incidents.models import DepartmentTask, Incident
from core.outbox.models import OutboundDelivery
from core.plans.store import plan_for_version
from core.platform.db import session_scope
from tests.api_server import Api, error_of, flood, issued_token, standard_api
from tests.conftest import Say
from tests.fixtures.api import ApiWith
from tests.fixtures.system import chromium_available
from tests.servers import PrefectServer

pytestmark = pytest.mark.prefect

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "3"))
ROLES = ("anonymous", "office", "manager", "admin", "water_affairs")


@functools.cache
def all_operations() -> list[Any]:
    """The app's operations from its OpenAPI schema, read when the test runs: built at import, the schema cost every
    pytest-xdist process 2-4 s of CPU at collection, though one of them runs this test."""
    schema = schemathesis.openapi.from_dict(app.openapi())
    return [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]


@dataclass
class Tally:
    requests: int = 0
    unsendable: int = 0  # examples the HTTP client itself refuses to send (e.g. a header that is not latin-1)
    unsatisfiable: int = 0  # operation, role and mode with nothing to generate
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


@pytest.fixture
def fuzz_api(api_with: ApiWith, prefect_server: PrefectServer) -> Iterator[Api]:
    """The API with Prefect reachable (so health is 200), the standard users and a world to point at."""
    with api_with({"BATON_PREFECT_API_URL": prefect_server.api_url}) as server:
        yield standard_api(server)


def real_parameters() -> dict[str, str]:
    """Ids of objects that exist: a flood incident with water_affairs' task open (a photo attached to it, not yet
    linked), a dead-lettered delivery."""
    incident = flood("assessment")
    task_id = incident.tasks["flood_risk_assessment"]
    with session_scope() as session:
        task = session.get(DepartmentTask, task_id)
        opened = session.get(Incident, incident.id)
        assert task is not None and opened is not None
        step = plan_for_version(session, opened.plan_version_id).step(task.step_key)
        photo = attachments.store(session, task=task, step=step, uploaded_by="user:water_affairs",
                                  filename="photo.png", stream=io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64))
        attachment_id = photo.id
    with session_scope() as session:
        delivery = OutboundDelivery(incident_id=incident.id, idempotency_key=str(uuid.uuid4()), purpose="assignment",
                                    target="water_affairs", endpoint="water_affairs", payload={"x": 1},
                                    payload_digest="0" * 64, attempts=4, last_status=503, outcome="failed")
        session.add(delivery)
        session.flush()
        delivery_id = delivery.id
    return {"incident_id": incident.id, "task_id": incident.tasks["flood_risk_assessment"], "type_key": "flood",
            "delivery_id": delivery_id, "attachment_id": attachment_id}


def pdf_unavailable(response: requests.Response) -> bool:
    """The PDF report refused because this machine has no Chromium to print it with (not a server error)."""
    if chromium_available() or response.status_code != 503:
        return False
    try:
        return bool(response.json()["error"]["code"] == "pdf_unavailable")
    except (ValueError, KeyError, TypeError):
        return False


def check_response(tally: Tally, label: str, response: requests.Response, curl: Callable[[], str]) -> None:
    """`curl` gives the request as a curl command, for a failure's message: built only for a failure (building it
    for each of the run's 3,700 responses cost a second or two of CPU)."""
    tally.requests += 1
    tally.statuses[response.status_code] += 1
    if response.status_code >= 500 and not (label.startswith("GET /api/incidents/{incident_id}/report.pdf ")
                                            and pdf_unavailable(response)):
        tally.failures.append(f"{label}: {response.status_code} {response.text[:200]}\n    {curl()[:600]}")
        return
    if 400 <= response.status_code < 500:
        try:
            error_of(_Adapter(response), response.status_code)  # type: ignore[arg-type]
        except (AssertionError, ValueError) as exc:
            tally.failures.append(f"{label}: {response.status_code} not in the error format: {exc}"[:400]
                                  + f"\n    {curl()[:600]}")


class _Adapter:
    """What `error_of` reads from a response (it is written for httpx's)."""

    def __init__(self, response: requests.Response) -> None:
        self.status_code = response.status_code
        self.text = response.text
        # case-insensitive, like httpx's (schemathesis gives each header's values as a list)
        self.headers = httpx.Headers([(name, value) for name, values in response.headers.items()
                                      for value in (values if isinstance(values, list) else [values])])
        self._response = response

    def json(self) -> Any:
        return self._response.json()


def examples(operation: Any, mode: GenerationMode, path_parameters: dict[str, str] | None) -> list[Any] | None:
    """The operation's examples in one mode, drawn once and sent as every role: generation is derandomized, so
    each role would have drawn the same cases, and drawing is most of the run's time. None when there is nothing
    to generate (e.g. no parameter to make invalid in negative mode)."""
    drawn: list[Any] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(operation.as_strategy(mode, path_parameters=path_parameters or None))
    def draw(case: Any) -> None:
        drawn.append(case)

    try:
        draw()
    except Unsatisfiable:
        return None
    return drawn


def send(api: Api, operation: Any, role: str, cases: list[Any], label: str, tally: Tally) -> None:
    """The cases as `role`: one for nobody, who gets no further than the login check."""
    revoke = operation.path == "/api/auth/revoke"
    for case in cases[:1] if role == "anonymous" else cases:
        headers: dict[str, str] = {}
        if role != "anonymous":
            # Revoking spends the token: give that operation a fresh one each time.
            token = issued_token(role) if revoke else api.tokens[role]
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = case.call(app=app, headers=headers, timeout=60)
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, UnicodeError, ValueError):
            tally.unsendable += 1
            continue
        check_response(tally, f"{label} as {role}", response, functools.partial(case.as_curl_command, headers=headers))


def test_no_input_gives_a_server_error_and_every_refusal_is_in_the_error_format(fuzz_api: Api, figures: Say) -> None:
    started = time.monotonic()
    known = real_parameters()
    tally = Tally()
    operations = [op for op in all_operations() if op.path.startswith(("/api/", "/public/"))]
    assert len(operations) >= 30, [op.path for op in operations]
    for operation in operations:
        names = re.findall(r"{(\w+)}", operation.path)
        fixed = {name: known[name] for name in names if name in known}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for parameters in (None, fixed) if fixed else (None,):
                label = f"{operation.method.upper()} {operation.path} ({mode.value}" \
                        f"{', real ids' if parameters else ''})"
                cases = examples(operation, mode, parameters)
                roles = [r for r in ROLES if not (parameters and r == "anonymous")]
                if cases is None:
                    tally.unsatisfiable += len(roles)
                    continue
                for role in roles:
                    send(fuzz_api, operation, role, cases, label, tally)
    figures(f"\nschemathesis: {len(operations)} operations x {len(ROLES)} roles, {tally.requests} requests "
          f"({tally.unsendable} examples the client could not send, {tally.unsatisfiable} runs with nothing to "
          f"generate) in {time.monotonic() - started:.0f} s; "
          f"statuses {dict(sorted(tally.statuses.items()))}; {len(tally.failures)} failures")
    for failure in tally.failures[:40]:
        figures("  " + failure)
    # The run reached past validation: successes and the usual refusals all occurred.
    assert {200, 401, 403, 404, 422} <= set(tally.statuses), tally.statuses
    assert not tally.failures, "\n".join(tally.failures[:40])
