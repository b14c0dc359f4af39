"""Refusals in the reader's language: every error answer of the API says why in the language of whoever asked
(the user's setting, else Accept-Language, else Chinese), with the service's English beside a Chinese message,
and every stable code has a sentence of its own in the catalogue."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest
from sqlmodel import select

import api
import core
from api.errors import HTTP_CODES
from api.refusals import FIELD_SAID, SAID, language_of
from core.platform.db import session_scope
from core.platform.errors import BatonError
from core.platform.templating import translations
from core.users.models import User
from tests.api_server import FORECAST, Api, error_of, flood

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def _codes_raised() -> set[str]:
    """Every stable code an answer can carry: each domain error class's, each the API raises itself, each HTTP
    status's."""
    for package in (core, api):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if ".migrations" not in module.name:
                importlib.import_module(module.name)
    codes: set[str] = set(HTTP_CODES.values())
    pending = [BatonError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    codes.discard(BatonError.code)
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "api").rglob("*.py"))
    codes |= set(re.findall(r'ApiError\(\d{3}, "([a-z_]+)"', source))
    codes |= set(re.findall(r'error_answer\([^,]+, \d{3}, "([a-z_]+)"', source))
    return codes


def test_every_code_an_answer_can_carry_has_its_own_sentence_in_chinese() -> None:
    codes = _codes_raised()
    assert len(codes) > 70
    missing = sorted(codes - set(SAID))
    assert not missing, f"add these codes to api/refusals.py's SAID: {missing}"
    zh = translations("zh")
    untranslated = [english for english in [*SAID.values(), *FIELD_SAID.values()] if zh.gettext(english) == english]
    assert not untranslated, untranslated


@pytest.mark.parametrize(("header", "user", "expected"), [
    (None, None, "zh"), ("en-US,en;q=0.9", None, "en"), ("zh-CN,zh;q=0.9,en;q=0.8", None, "zh"),
    ("fr-FR, en;q=0.5, zh;q=0.4", None, "en"), ("en;q=0, zh-TW", None, "zh"), ("en;q=x", None, "zh"),
    ("en-GB", "zh", "zh"), (None, "en", "en"), ("de", None, "zh"),
])
def test_the_readers_language_is_their_setting_else_what_their_client_accepts(header: str | None, user: str | None,
                                                                               expected: str) -> None:
    assert language_of(header, user) == expected


def _set_lang(username: str, lang: str) -> None:
    with session_scope() as session:
        user = session.exec(select(User).where(User.username == username)).one()
        user.lang = lang
        session.add(user)


def test_a_form_refusal_names_each_field_and_its_bound_in_chinese_and_in_english_for_an_english_user(
        api: Api) -> None:
    incident = flood("forecast")
    url = f"/api/tasks/{incident.tasks['rainstorm_forecast']}/complete"
    bad = {"outputs": {**FORECAST, "rainfall_1h": -5}}
    error = error_of(api.call("meteorology", "POST", url, json=bad), 422, "form_invalid")
    assert error["message"].startswith("表单填写有误，未保存任何内容：")
    assert "rainfall_1h：不能小于 0 毫米" in error["message"], error  # the unit in the reader's language
    assert "rainfall_1h: must be at least 0 mm" in error["message_en"]
    _set_lang("meteorology", "en")
    english = api.call("meteorology", "POST", url, json=bad)
    error = error_of(english, 422, "form_invalid")
    assert english.headers["content-language"] == "en" and "message_en" not in error
    assert "rainfall_1h: must be at least 0 mm" in error["message"]


def test_a_malformed_request_is_refused_in_the_language_the_client_accepts(api: Api) -> None:
    # not yet known (no token): Accept-Language decides, Chinese when it says nothing
    missing = api.call(None, "POST", "/api/auth/token", data={"username": "office"})
    error = error_of(missing, 422, "invalid_request")
    assert error["message"] == "请求内容不符合要求：password：此项必填", error
    english = api.call(None, "POST", "/api/auth/token", data={"username": "office"},
                       headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert "password" in error_of(english, 422, "invalid_request")["message"]
    assert english.headers["content-language"] == "en"
    # a known user's setting decides over what the client accepts
    unknown = api.call("office", "GET", "/api/tasks/no-such-task", headers={"Accept-Language": "en"})
    error = error_of(unknown, 404, "not_found")
    assert error["message"] == "所请求的内容不存在，或您无权查看。" and "no-such-task" in error["message_en"]


def test_a_domain_refusal_is_said_by_its_code_with_the_services_english_beside(api: Api) -> None:
    refused = api.call("office", "POST", "/api/incidents", json={"type": "no_such_type", "level": "IV", "title": "x"})
    error = error_of(refused, 422, "unknown_incident_type")
    assert error["message"] == "该类事件没有相应的应急预案。" and "no_such_type" in error["message_en"]


HTML = {"Accept": "text/html,application/xhtml+xml"}


def test_a_browser_gets_an_error_page_in_its_language_and_a_program_the_error_format(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # a public warning that does not exist: a page for a person, JSON for a feed reader, a 404 for both
    missing = api.call(None, "GET", "/public/warnings/urn:oid:no-such", headers=HTML)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "页面不存在，或您无权查看。" in missing.text, missing.text[:500]
    assert '{"error"' not in missing.text
    error_of(api.call(None, "GET", "/public/warnings/urn:oid:no-such"), 404, "not_found")
    error_of(api.call(None, "GET", "/public/warnings/no-such.xml", headers=HTML), 404, "not_found")
    # a page address asked with the wrong method
    wrong = api.call("office", "GET", "/office/tasks/x/chase-up", headers=HTML)
    assert wrong.status_code == 405 and wrong.headers["content-type"].startswith("text/html")
    assert "该地址不接受此类请求" in wrong.text and "allow" in {k.lower() for k in wrong.headers}
    # a failure on the server: the page says so (the details only in the log), with the security headers
    from api.routes import public

    def broken(*_: object, **__: object) -> list[object]:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(public, "active_public", broken)
    failed = api.call(None, "GET", "/public/warnings", headers=HTML)
    assert failed.status_code == 500 and failed.headers["content-type"].startswith("text/html")
    assert "服务器出现错误" in failed.text and "secret detail" not in failed.text
    assert failed.headers["x-content-type-options"] == "nosniff"
    assert error_of(api.call(None, "GET", "/public/warnings"), 500, "internal_error")["message"] == \
        "服务器出现错误，已记录在案。"
