"""The pages' message catalogues: every message the templates use is translated into Chinese, the compiled
.mo files match their .po sources, and the placeholders agree."""

from __future__ import annotations

import re
from gettext import GNUTranslations
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir, extract_from_file
from babel.messages.pofile import read_po

from api import refusals
from core.platform.templating import LANGUAGES, LOCALES, TEMPLATES, environment, translations

# The same settings as core.platform.templating's environment, so that `{% trans %}` blocks are read alike.
JINJA_OPTIONS = {"extensions": "jinja2.ext.i18n", "trim_blocks": "true", "lstrip_blocks": "true", "silent": "false"}
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2)}
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|%[sd]")


def catalogue(lang: str) -> Catalog:
    with (LOCALES / lang / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle, locale=lang)


# Python modules whose messages are marked for the catalogue (`N_`) and said through it.
PYTHON_SOURCES = (Path(refusals.__file__),)


def used_messages() -> dict[str, list[str]]:
    """Every msgid in the templates and in the Python modules that mark theirs."""
    found = template_messages()
    for source in PYTHON_SOURCES:
        for lineno, msgid, _comments, _context in extract_from_file("python", str(source), keywords={"N_": None}):
            assert isinstance(msgid, str), msgid  # N_ marks one message, never a plural
            found.setdefault(msgid, []).append(f"{source.name}:{lineno}")
    return found


def template_messages() -> dict[str, list[str]]:
    """Every msgid in the templates, as `pybabel extract` with Jinja's extractor finds them."""
    found: dict[str, list[str]] = {}
    method_map = [("**.html", "jinja2.ext:babel_extract"), ("**.j2", "jinja2.ext:babel_extract"),
                  ("**.svg", "jinja2.ext:babel_extract")]
    for filename, lineno, message, _comments, _context in extract_from_dir(
            str(TEMPLATES), method_map=method_map, options_map={"**": JINJA_OPTIONS}, keywords=KEYWORDS):
        for msgid in message if isinstance(message, tuple) else (message,):
            if msgid:
                found.setdefault(msgid, []).append(f"{filename}:{lineno}")
    return found


def test_templates_use_messages_and_the_extractors_agree() -> None:
    used = template_messages()
    assert len(used) > 100, "the page templates should say everything through gettext"
    # Jinja's own reading (the environment pages render with) finds the same messages.
    env = environment()
    # `_("%(n)s left", n=3)` reads as the tuple ("%(n)s left", None): the message, then one None per value.
    direct = {msg[0] if isinstance(msg, tuple) else msg for path in TEMPLATES.rglob("*.html")
              for _, _, msg in env.extract_translations(path.read_text(encoding="utf-8"))  # type: ignore[attr-defined]
              if isinstance(msg, str) or (isinstance(msg, tuple) and isinstance(msg[0], str))}
    assert direct == set(used)


def test_every_message_in_the_templates_has_a_chinese_translation() -> None:
    zh = catalogue("zh")
    missing = {msgid: where for msgid, where in used_messages().items()
               if msgid not in zh or not zh[msgid].string or zh[msgid].fuzzy}
    assert not missing, f"add these to core/locales/zh/LC_MESSAGES/messages.po: {missing}"


def test_catalogues_hold_no_stale_messages_and_the_same_ones() -> None:
    used = set(used_messages())
    ids = {lang: {m.id for m in catalogue(lang) if m.id} for lang in LANGUAGES}
    assert ids["zh"] == used, f"unused in zh: {ids['zh'] - used}"
    assert ids["en"] == ids["zh"]
    # English is the source language: its catalogue is empty or the identity.
    assert all(m.string in ("", m.id) for m in catalogue("en") if m.id)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_placeholders_agree(lang: str) -> None:
    cat = catalogue(lang)
    assert not list(cat.check()), list(cat.check())
    for message in cat:
        if message.id and message.string:
            assert isinstance(message.id, str) and isinstance(message.string, str)
            assert sorted(PLACEHOLDER.findall(message.id)) == sorted(PLACEHOLDER.findall(message.string)), message.id
            if PLACEHOLDER.search(message.id):
                assert "python-format" in message.flags, message.id


@pytest.mark.parametrize("lang", LANGUAGES)
def test_compiled_catalogue_is_up_to_date(lang: str) -> None:
    """The .mo holds exactly the .po's translations (recompile: pybabel compile -d core/locales -D messages)."""
    mo = LOCALES / lang / "LC_MESSAGES" / "messages.mo"
    assert mo.exists(), f"{mo} is missing"
    with mo.open("rb") as handle:
        compiled = GNUTranslations(handle)
    table: dict[str, str] = dict(compiled._catalog)  # type: ignore[attr-defined]
    table.pop("", None)
    expected = {m.id: m.string for m in catalogue(lang) if m.id and m.string and not m.fuzzy}
    assert table == expected, "the .mo is out of date: run pybabel compile -d core/locales -D messages"
    assert compiled.info().get("content-type", "").endswith("charset=utf-8")


def test_pages_get_the_catalogues() -> None:
    assert translations("zh").gettext("Office console") == "应急办工作台"
    assert translations("en").gettext("Office console") == "Office console"
    assert translations("zh").gettext("Level %(level)s") % {"level": "II"} == "II级"
    assert Path(LOCALES / "zh" / "LC_MESSAGES" / "messages.po").read_text(encoding="utf-8").count("msgid") > 100


def test_messages_take_their_values_escaped_and_trans_blocks_work_in_both_languages() -> None:
    """The environment's gettext is newstyle: values go in as arguments and are escaped on the way in."""
    from core.platform.templating import environment

    message = '{{ _("Verified: %(count)s entries, hash chain intact.", count=count) }}'
    english = environment("en").from_string(message).render(count="<script>")
    assert english == "Verified: &lt;script&gt; entries, hash chain intact."
    chinese = environment("zh").from_string(message).render(count=7)
    assert "7" in chinese and "Verified" not in chinese
    block = "{% trans count=count %}Verified: {{ count }} entries, hash chain intact.{% endtrans %}"
    assert environment("zh").from_string(block).render(count=7) == chinese
