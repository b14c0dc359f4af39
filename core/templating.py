"""The one Jinja environment (CAP XML, pages, reports): autoescaped, undefined names are errors, with the
i18n extension; each render passes the reader's gettext (zh by default, en beside it)."""

from __future__ import annotations

from functools import lru_cache
from gettext import GNUTranslations, NullTranslations
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
LOCALES = HERE / "locales"
LANGUAGES = ("zh", "en")


@lru_cache(maxsize=4)
def translations(lang: str) -> NullTranslations:
    mo = LOCALES / lang / "LC_MESSAGES" / "messages.mo"
    if mo.exists():
        with mo.open("rb") as handle:
            return GNUTranslations(handle)
    return NullTranslations()


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(enabled_extensions=("html", "xml", "svg", "j2"), default_for_string=True,
                                     default=True),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    return env


def render(name: str, lang: str = "zh", **context: Any) -> str:
    """Render with the reader's language: `{% trans %}` and `_()` use its catalogue."""
    catalogue = translations(lang if lang in LANGUAGES else "zh")
    return environment().get_template(name).render(
        gettext=catalogue.gettext, ngettext=catalogue.ngettext, _=catalogue.gettext, lang=lang, **context)
