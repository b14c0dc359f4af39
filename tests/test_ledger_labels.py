"""The ledger as a reader sees it (the review page's table): every kind of entry worded in the reader's language,
never its stored name, and the parties that are not a department, a position or a person worded too."""

from __future__ import annotations

import re

import pytest

from api.pages.rendering import Helpers
from core.ledger.kinds import LedgerKind
from core.platform.templating import environment

ASCII_LETTER = re.compile(r"[A-Za-z]")
# Every kind the code writes is a LedgerKind member (ledger.append and append_to take nothing else); a kind
# written as a bare string would belong here.
KINDS = sorted(kind.value for kind in LedgerKind)


def ledger_kind(kind: str, lang: str) -> str:
    template = environment(lang).from_string('{% import "pages/_macros.html" as m with context %}'
                                             "{{ m.ledger_kind(kind) }}")
    return template.render(kind=kind, lang=lang, h=Helpers(lang)).strip()


def ledger_party(party: str, lang: str) -> str:
    template = environment(lang).from_string('{% import "pages/_macros.html" as m with context %}'
                                             "{{ m.ledger_party(party) }}")
    return template.render(party=party, lang=lang, h=Helpers(lang)).strip()


@pytest.mark.parametrize("kind", KINDS)
def test_every_ledger_kind_has_a_chinese_label(kind: str) -> None:
    label = ledger_kind(kind, "zh")
    assert label and label != kind, f"{kind} is shown raw"
    assert not ASCII_LETTER.search(label), f"{kind} reads {label!r}"


@pytest.mark.parametrize("kind", KINDS)
def test_every_ledger_kind_has_an_english_label(kind: str) -> None:
    label = ledger_kind(kind, "en")
    assert label and label != kind and "." not in label and "_" not in label, f"{kind} reads {label!r}"


def test_labels_are_told_apart() -> None:
    # Two kinds worded alike would read as one in the table (sheet.opened on the desk and in the ledger aside).
    for lang in ("zh", "en"):
        labels = [ledger_kind(kind, lang) for kind in KINDS]
        alike = {label for label in labels if labels.count(label) > 1}
        assert alike == set(), lang


@pytest.mark.parametrize(("party", "zh", "en"), [
    ("signer", "签发人", "Signer"),
    ("public", "社会公众", "The public"),
    ("exercise", "演练", "Exercise"),
    ("all", "本事件各相关部门", "Every department on the incident"),
])
def test_the_parties_that_are_no_department_are_worded(party: str, zh: str, en: str) -> None:
    assert ledger_party(party, "zh") == zh
    assert ledger_party(party, "en") == en


def test_other_parties_read_as_departments_positions_and_people() -> None:
    both = ledger_party("emergency_office,signer", "zh")
    assert both.endswith("、签发人") and not ASCII_LETTER.search(both)
    assert ledger_party("emergency_office", "zh") == Helpers("zh").party("emergency_office")
    assert ledger_party("", "zh") == ""
