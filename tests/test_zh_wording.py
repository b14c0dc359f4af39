"""The Chinese users read, held to the wording review (docs/wording-review.md, issue 16 item 6): one form of a
level's numeral (Ⅱ级, never II级, 2级 or 二级 beside it), 公开范围 and never 密级 for public/internal/restricted,
units in Chinese, and no engineering words (CAP, 流程运行, 编排, 哈希, Asia/Shanghai) in the zh catalogue, the
templates' Chinese or the plans' Chinese texts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from babel.messages.pofile import read_po

from core.plans.wording import ZH_UNIT_NAMES, Wording
from core.platform.templating import LOCALES, TEMPLATES
from core.sharing.notice import worded_value
from process_defs.schema import FieldType, FormField

PLANS = Path(__file__).resolve().parents[1] / "process_defs"
CJK = re.compile(r"[\u4e00-\u9fff]")

# A response level written any way but Ⅰ级 … Ⅳ级: Latin letters (II级), digits (2级响应) or Chinese numerals
# (二级响应). A wind force (阵风12级) or an earthquake's magnitude is not a level, hence the words that follow.
MIXED_LEVEL = re.compile(r"(?<![A-Za-z])(?:I{1,3}|IV)级|(?<!\d)[1-4]级(?:应急)?响应|[一二三四]级(?:应急)?响应")
JARGON = re.compile(r"密级|流程运行|编排|哈希|工作进程|贵单位|（CAP）|Asia/Shanghai|UTC\+08|skipped")
# Units a Chinese page may show as written: they are read the same in Chinese.
SHARED_UNITS = {"%", "°C"}


def zh_catalogue() -> Iterator[tuple[str, str]]:
    with (LOCALES / "zh" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        for message in read_po(handle, locale="zh"):
            if message.id and message.string:
                ids = [message.id] if isinstance(message.id, str) else list(message.id)
                strings = [message.string] if isinstance(message.string, str) else list(message.string)
                for text in strings:
                    yield str(ids[0]), str(text)


def template_chinese() -> Iterator[tuple[str, str]]:
    """Each template line with Chinese in it, outside Jinja comments (which no reader sees)."""
    for path in sorted([*TEMPLATES.rglob("*.html"), *TEMPLATES.rglob("*.j2")]):
        text = re.sub(r"\{#.*?#\}", "", path.read_text(encoding="utf-8"), flags=re.S)
        for n, line in enumerate(text.splitlines(), 1):
            if CJK.search(line):
                yield f"{path.name}:{n}", line


def plan_chinese() -> Iterator[tuple[str, str]]:
    """Every `zh:` text of every shipped plan, signal rule and department list."""
    def walk(node: object, where: str) -> Iterator[tuple[str, str]]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "zh" and isinstance(value, str):
                    yield where, value
                else:
                    yield from walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, f"{where}[{i}]")
    for path in sorted(PLANS.glob("*.yaml")):
        yield from walk(yaml.safe_load(path.read_text(encoding="utf-8")), path.name)


def all_chinese() -> list[tuple[str, str]]:
    return [*zh_catalogue(), *template_chinese(), *plan_chinese()]


def test_one_form_of_level_numeral_in_the_chinese() -> None:
    mixed = [(where, text) for where, text in all_chinese() if MIXED_LEVEL.search(text)]
    assert mixed == []


def test_no_jargon_and_no_secrecy_term_in_the_chinese() -> None:
    found = [(where, text) for where, text in all_chinese() if JARGON.search(text)]
    assert found == []


def test_classification_is_worded_as_publication_scope() -> None:
    assert dict(zh_catalogue())["Classification"] == "公开范围"
    wording = Wording("zh")
    assert [wording.classification(k) for k in ("public", "internal", "restricted")] == ["公开", "内部", "限定范围"]


def test_every_unit_the_plans_write_in_letters_has_a_chinese_name() -> None:
    units = set(re.findall(r"^\s*unit: *\"?([^\"\n]+?)\"?\s*$",
                           "\n".join(p.read_text(encoding="utf-8") for p in PLANS.glob("*.yaml")), re.M))
    lettered = {u for u in units if u.isascii() and u not in SHARED_UNITS}
    assert lettered and lettered <= set(ZH_UNIT_NAMES), lettered - set(ZH_UNIT_NAMES)


@pytest.mark.parametrize(("unit", "zh", "en"), [("mm", "80 毫米", "80 mm"), ("h", "80 小时", "80 h"),
                                                ("人", "80 人", "80 people")])
def test_a_quantity_is_shown_in_the_reader_s_units(unit: str, zh: str, en: str) -> None:
    assert Wording("zh").quantity(80, unit) == zh
    assert Wording("en").quantity(80, unit) == en


def test_a_public_notice_in_chinese_writes_millimetres_in_chinese() -> None:
    rainfall = FormField(key="rainfall_1h", label={"zh": "小时雨量", "en": "Hourly rainfall"},
                         type=FieldType.number, unit="mm")
    assert worded_value(rainfall, 80, "zh") == "80毫米"
    assert worded_value(rainfall, 80, "en") == "80 mm"


RELEASED = re.compile(r"预警(?:信号)?已(?:经)?发布|warning (?:signal )?(?:is in force|has been (?:issued|published))",
                      re.I)


def test_no_department_notice_says_a_warning_is_out_before_it_is_signed_off() -> None:
    """A plan's notice to departments goes when the forecast is in; the warning it follows is then still being
    reviewed and signed off (a warning step completes once drafted, core.sharing.warnings), so the notice may
    not tell a sub-district that it has been published."""
    def steps(node: object) -> Iterator[dict[str, object]]:
        if isinstance(node, dict):
            if node.get("action") == "notify_department":
                yield node
            for value in node.values():
                yield from steps(value)
        elif isinstance(node, list):
            for value in node:
                yield from steps(value)

    said, notices = [], 0
    for path in sorted(PLANS.glob("*.yaml")):
        for step in steps(yaml.safe_load(path.read_text(encoding="utf-8"))):
            params = step.get("params")
            message = params.get("message") if isinstance(params, dict) else None
            notices += 1
            said += [f"{path.name} {step['key']}: {text}" for text in (message or {}).values() if RELEASED.search(text)]
    assert notices >= 2
    assert not said, "\n".join(said)
    assert RELEASED.search("暴雨预警已发布，请立即检查") and RELEASED.search("A typhoon warning is in force")
