"""CAP 1.2 alerts rendered from Baton's incidents: levels and colours mapped to severity, urgency, certainty."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from core.incidents.models import Incident
from core.platform.settings import get_settings
from core.platform.templating import environment
from process_defs.actions import PublishWarningParams
from process_defs.schema import LEVEL_COLOURS

CAP_SCHEMA = Path(__file__).resolve().parents[1] / "standards" / "CAP-v1.2.xsd"

# China's four grades onto CAP's scales: blue is a possible minor event, red an observed extreme one.
CAP_GRADES: dict[str, tuple[str, str, str]] = {
    "IV": ("Minor", "Future", "Possible"),
    "III": ("Moderate", "Expected", "Likely"),
    "II": ("Severe", "Immediate", "Likely"),
    "I": ("Extreme", "Immediate", "Observed"),
}


@dataclass(frozen=True)
class RenderedAlert:
    identifier: str
    xml: str
    status: str


def cap_time(moment: datetime) -> str:
    """CAP's dateTime: seconds precision with a ±hh:mm offset (never `Z`)."""
    local = moment.astimezone(ZoneInfo(get_settings().timezone)).replace(microsecond=0)
    text = local.isoformat()
    return text[:-6] + "+00:00" if text.endswith("Z") else text


def render_alert(
    incident: Incident,
    params: PublishWarningParams,
    *,
    identifier: str,
    sent: datetime,
    references: str | None = None,
    description_zh: str = "",
    description_en: str = "",
) -> RenderedAlert:
    """The alert's XML. The description is the public facts the caller gives (`warnings._facts`) or absent: never
    the incident's own description (the office's internal note, a cascade's reason)."""
    settings = get_settings()
    severity, urgency, certainty = CAP_GRADES[incident.level]
    status = "Exercise" if incident.drill else "Actual"
    area_zh = incident.location_name or "全市"
    area_en = incident.location_name or "Whole city"
    circle = None
    if incident.lat is not None and incident.lon is not None:
        circle = f"{incident.lat:.4f},{incident.lon:.4f} 5.0"
    colour = LEVEL_COLOURS[incident.level]
    infos = [
        {"language": "zh-CN", "event": params.event.zh, "headline": f"{params.headline.zh}（{incident.title}）",
         "description": description_zh,
         "instruction": params.instruction.zh, "area": area_zh, "sender_name": "应急管理局"},
        {"language": "en-US", "event": params.event.en, "headline": f"{params.headline.en} ({incident.title})",
         "description": description_en,
         "instruction": params.instruction.en, "area": area_en, "sender_name": "Emergency Management Bureau"},
    ]
    xml = environment().get_template("cap_alert.xml.j2").render(
        identifier=identifier, sender=settings.sender, sent=cap_time(sent), status=status,
        msg_type=params.msg_type, references=references,
        note="演练信息，请勿当真 / Drill message, not a real warning" if incident.drill else None,
        infos=infos, category=params.category, response_type=params.response_type, urgency=urgency,
        severity=severity, certainty=certainty, colour=colour, level=incident.level,
        web=f"https://emergency.example.gov.cn/public/warnings/{identifier}", circle=circle,
    )
    return RenderedAlert(identifier=identifier, xml=xml, status=status)
