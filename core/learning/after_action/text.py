"""Words for the report's templates and pictures: durations for people, shares, and a drill's plan clock."""

from __future__ import annotations

from datetime import datetime

from markupsafe import Markup

from core.learning.after_action.compute import as_utc
from core.plans.wording import PeopleOf, Wording

UNITS = {"zh": ("天", "小时", "分", "秒"), "en": (" d", " h", " min", " s")}


def format_duration(seconds: float | None, lang: str = "zh") -> str:
    """A duration for people: 45秒, 12分05秒, 1小时05分, 2天3小时 (en: 45 s, 12 min 05 s, 1 h 05 min, 2 d 3 h)."""
    if seconds is None:
        return "—"
    sign = "-" if seconds < 0 else ""
    total = round(abs(seconds))
    day, hour, minute, second = UNITS["en" if lang == "en" else "zh"]
    sep = " " if lang == "en" else ""
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        text = f"{days}{day}" + (f"{sep}{hours}{hour}" if hours else "")
    elif hours:
        text = f"{hours}{hour}" + (f"{sep}{minutes:02d}{minute}" if minutes else "")
    elif minutes:
        text = f"{minutes}{minute}" + (f"{sep}{secs:02d}{second}" if secs else "")
    else:
        text = f"{secs}{second}"
    return sign + text.strip()


class ReportText(Wording):
    """What the report templates need: `Wording` with durations, shares, and a drill's plan clock."""

    def __init__(self, lang: str = "zh", tz: str | None = None, *, plan_clock: tuple[datetime, float] | None = None,
                 people: PeopleOf | None = None) -> None:
        super().__init__(lang, tz, people=people)
        # A compressed drill shows its moments on the plan clock: origin + (moment − origin) × speed.
        self.plan_clock = plan_clock if plan_clock and plan_clock[1] > 1 else None

    def when(self, moment: datetime | None, seconds: bool = False, wall: bool = False) -> str:
        """A moment in Baton's time zone; on the plan clock for a compressed drill unless `wall`."""
        if moment is None:
            return "—"
        value = as_utc(moment)
        assert value is not None
        if self.plan_clock is not None and not wall:
            origin, speed = self.plan_clock
            value = origin + (value - origin) * speed
        return self.local(value, "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")

    def dur(self, seconds: float | None) -> str:
        return format_duration(seconds, self.lang)

    def pct(self, ratio: float | None) -> str:
        return "—" if ratio is None else f"{ratio * 100:.0f}%"

    def speed(self, value: float) -> str:
        return f"{value:g}"

    def css_string(self, text: str) -> Markup:
        """`text` as a quoted CSS string for a print stylesheet (the running header): every character that could
        end the string, the declaration or the style element is written as a CSS escape."""
        out = []
        for char in text:
            if char.isalnum() or char in " -_.·:()（）":
                out.append(char)
            else:
                out.append(f"\\{ord(char):06x}")
        return Markup('"' + "".join(out) + '"')
