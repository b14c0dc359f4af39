"""The one Jinja environment (CAP XML, pages, reports): autoescaped, undefined names are errors, with the
i18n extension; each render passes the reader's gettext (zh by default, en beside it).

A reader who asks for both (`zh-en`, 中英对照) reads the Chinese pages with each text's English under it: their
gettext marks each text's two languages (U+E000 Chinese U+E001 English U+E002, private-use characters), and the
rendered page turns each marked text into its Chinese with the English under it where markup can go (text) and
into its Chinese alone where it cannot (attributes, titles, options, scripts)."""

from __future__ import annotations

import re
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
SUBTITLED = "zh-en"  # Chinese with English under each text, when the reader asks for both
READER_LANGUAGES = (*LANGUAGES, SUBTITLED)
MARK_OPENS, MARK_ENGLISH, MARK_CLOSES = "\ue000", "\ue001", "\ue002"
_MARKS = re.compile(f"[{MARK_OPENS}{MARK_ENGLISH}{MARK_CLOSES}]")
_MARK_SPLIT = re.compile(f"([{MARK_OPENS}{MARK_ENGLISH}{MARK_CLOSES}])")
_TAG = re.compile(r"(<!--.*?-->|<[^>]*>)", re.DOTALL)
_PLAIN_ELEMENT = re.compile(r"<(/?)(title|option|script|style|textarea|select)\b", re.IGNORECASE)
SUBTITLE = '<small class="subtitle" lang="en">{}</small>'


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


def _unmarked(value: Any) -> Any:
    """A value printed on a subtitled page, without the marks a stored text might carry (gettext's and the
    plans' bilingual texts, which are Markup, keep theirs)."""
    value = _renderable(value)
    if isinstance(value, str) and not isinstance(value, Markup) and _MARKS.search(value):
        return _MARKS.sub("", value)
    return value


def with_english(chinese: str, english: str) -> str:
    """`chinese` marked with its English, for a subtitled page (unmarked when the two are the same)."""
    if not english or english == chinese:
        return chinese
    return f"{MARK_OPENS}{chinese}{MARK_ENGLISH}{english}{MARK_CLOSES}"


def _resolved(text: str, *, subtitle: bool) -> str:
    """`text` (one run of text between tags) with each outermost marked text as its Chinese, followed by its
    English as a subtitle when `subtitle`. A marked text within another's Chinese reads as its Chinese, within the
    other's English as its English; a mark without its pair (a text cut short) is dropped."""
    if not _MARKS.search(text):
        return text
    # each frame: the (Chinese, English) views of its parts so far, and whether its English has begun
    frames: list[tuple[list[tuple[str, str]], list[tuple[str, str]] | None]] = [([], None)]
    for piece in _MARK_SPLIT.split(text):
        if piece == MARK_OPENS:
            frames.append(([], None))
        elif piece == MARK_ENGLISH:
            if len(frames) > 1 and frames[-1][1] is None:
                frames[-1] = (frames[-1][0], [])
        elif piece == MARK_CLOSES:
            if len(frames) > 1 and frames[-1][1] is not None:
                chinese, english = frames.pop()
                zh = "".join(part[0] for part in chinese)
                en = "".join(part[1] for part in english or [])
                if len(frames) == 1 and subtitle:
                    frames[-1][0].append((zh + SUBTITLE.format(en), ""))
                else:
                    (frames[-1][1] if frames[-1][1] is not None else frames[-1][0]).append((zh, en))
        elif piece:
            (frames[-1][1] if frames[-1][1] is not None else frames[-1][0]).append((piece, piece))
    while len(frames) > 1:  # marks never closed: their Chinese as it stands
        chinese, _ = frames.pop()
        (frames[-1][1] if frames[-1][1] is not None else frames[-1][0]).extend(chinese)
    return "".join(part[0] for part in frames[0][0])


def subtitled(html: str) -> str:
    """A rendered page with each marked text as its Chinese and its English under it in the page's text, and as
    its Chinese alone inside tags and in the elements whose content is not markup."""
    out: list[str] = []
    plain: str | None = None
    for part in _TAG.split(html):
        if part.startswith("<"):
            element = _PLAIN_ELEMENT.match(part)
            if element:
                name = element.group(2).lower()
                if element.group(1):
                    plain = None if name in (plain, "select") else plain
                elif name != "select":
                    plain = name
            out.append(_resolved(part, subtitle=False))
        else:
            out.append(_resolved(part, subtitle=plain is None))
    return "".join(out)


def _subtitled_gettext() -> tuple[Any, Any]:
    chinese = translations("zh")

    def gettext(message: str) -> str:
        return with_english(chinese.gettext(message), message)

    def ngettext(singular: str, plural: str, n: int) -> str:
        return with_english(chinese.ngettext(singular, plural, n), singular if n == 1 else plural)

    return gettext, ngettext


@lru_cache(maxsize=len(READER_LANGUAGES))
def environment(lang: str = "zh") -> Environment:
    """The environment of one reader language. Its gettext is Jinja's "newstyle": `_("%(n)s left", n=3)` and
    `{% trans n=3 %}` both work, and the values are escaped before they enter the translated text."""
    env = Environment(
        finalize=_unmarked if lang == SUBTITLED else _renderable,
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(enabled_extensions=("html", "xml", "svg", "j2"), default_for_string=True,
                                     default=True),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    if lang == SUBTITLED:
        env.install_gettext_callables(*_subtitled_gettext(), newstyle=True)  # type: ignore[attr-defined]
    else:
        env.install_gettext_translations(translations(lang if lang in LANGUAGES else "zh"),  # type: ignore[attr-defined]
                                         newstyle=True)
    return env


def render(name: str, lang: str = "zh", **context: Any) -> str:
    """Render in the reader's language (Chinese unless English is asked for; Chinese with English subtitles on a
    page for a reader who asks for both, and Chinese alone in any other document for them)."""
    if lang == SUBTITLED:
        marked = environment(SUBTITLED).get_template(name).render(lang="zh", subtitled=True, **context)
        return subtitled(marked) if name.endswith(".html") else _resolved(marked, subtitle=False)
    lang = lang if lang in LANGUAGES else "zh"
    return environment(lang).get_template(name).render(lang=lang, subtitled=False, **context)
