"""The one Jinja environment (CAP XML, pages, reports): autoescaped, undefined names are errors, with the
i18n extension; each render passes the reader's gettext (zh by default, en beside it)."""

from __future__ import annotations

from functools import lru_cache
from gettext import GNUTranslations, NullTranslations
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from core.platform.input_policy import xml_safe

HERE = Path(__file__).resolve().parent.parent  # core/: templates/ and locales/
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


def _renderable(value: Any) -> Any:
    """Every value a template prints, without the characters XML cannot carry: a text stored before the input
    policy held (or a planner's) still renders into a well-formed CAP alert, feed or page."""
    if isinstance(value, str):
        clean = xml_safe(value)
        if len(clean) != len(value):
            return Markup(clean) if isinstance(value, Markup) else clean
    return value


@lru_cache(maxsize=len(LANGUAGES))
def environment(lang: str = "zh") -> Environment:
    """The environment of one reader language. Its gettext is Jinja's "newstyle": `_("%(n)s left", n=3)` and
    `{% trans n=3 %}` both work, and the values are escaped before they enter the translated text."""
    env = Environment(
        finalize=_renderable,
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(enabled_extensions=("html", "xml", "svg", "j2"), default_for_string=True,
                                     default=True),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(translations(lang if lang in LANGUAGES else "zh"),  # type: ignore[attr-defined]
                                     newstyle=True)
    return env


def render(name: str, lang: str = "zh", **context: Any) -> str:
    """Render in the reader's language (Chinese unless English is asked for)."""
    lang = lang if lang in LANGUAGES else "zh"
    return environment(lang).get_template(name).render(lang=lang, **context)
