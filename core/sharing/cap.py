"""CAP 1.2 alerts rendered from Baton's warnings: the signal colour mapped to severity, urgency, certainty."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core.platform.settings import get_settings
from core.platform.templating import environment
from process_defs.schema import LEVEL_COLOURS

CAP_SCHEMA = Path(__file__).resolve().parents[1] / "standards" / "CAP-v1.2.xsd"

# China's four colours onto CAP's scales: blue is a possible minor event, red an extreme one.
CAP_GRADES: dict[str, tuple[str, str, str]] = {
    "IV": ("Minor", "Future", "Possible"),
    "III": ("Moderate", "Expected", "Likely"),
    "II": ("Severe", "Immediate", "Likely"),
    "I": ("Extreme", "Immediate", "Observed"),
}
COLOUR_GRADES: dict[str, tuple[str, str, str]] = {colour: CAP_GRADES[level] for level, colour in
                                                  LEVEL_COLOURS.items()}
EXERCISE_NOTE = "演练信息，请勿当真 / Drill message, not a real warning"


def cap_time(moment: datetime) -> str:
    """CAP's dateTime: seconds precision with a ±hh:mm offset (never `Z`)."""
    local = moment.astimezone(ZoneInfo(get_settings().timezone)).replace(microsecond=0)
    text = local.isoformat()
    return text[:-6] + "+00:00" if text.endswith("Z") else text


def web_address(identifier: str) -> str:
    return f"https://emergency.example.gov.cn/public/warnings/{identifier}"


def render_alert(*, identifier: str, sent: datetime, status: str, msg_type: str, content: dict[str, Any],
                 colour: str, level: str, expires: datetime, references: str | None = None,
                 circle: str | None = None, polygons: list[str] | None = None) -> str:
    """The alert's XML from a warning's content (texts in zh/en as `core.sharing.notice` words them; the
    description is public facts only, never the incident's own description, the office's internal note)."""
    severity, urgency, certainty = COLOUR_GRADES[colour]
    infos = [{"language": language, "event": content["event"][lang], "headline": content["headline"][lang],
              "description": content["description"][lang], "instruction": content["instruction"][lang],
              "area": content["area"][lang], "sender_name": content["issuer"][lang]}
             for language, lang in (("zh-CN", "zh"), ("en-US", "en"))]
    return environment().get_template("cap_alert.xml.j2").render(
        identifier=identifier, sender=get_settings().sender, sent=cap_time(sent), status=status,
        msg_type=msg_type, references=references, note=EXERCISE_NOTE if status == "Exercise" else None,
        infos=infos, category=content["category"], response_type=content["response_type"], urgency=urgency,
        severity=severity, certainty=certainty, colour=colour, level=level, expires=cap_time(expires),
        web=web_address(identifier), circle=circle, polygons=polygons or [])
