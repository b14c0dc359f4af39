"""Rules that turn monitoring signals into incidents (`process_defs/signals.yaml`).

A rule matches a signal kind (rainfall, water level, a meteorological CAP alert, a hospital syndromic alert),
names the incident type it opens and how duplicates are recognised: signals with the same dedupe key inside
the window merge into the incident already open. The level a signal means is the plan's: its grading's
criteria on the signal (`{signal: rainfall, field: value, …}`), one source of truth for signals and
departments' reports alike; a CAP alert's level is its severity.
"""

from __future__ import annotations

import string

from pydantic import Field

from process_defs.schema import KEY_PATTERN, Strict, Text

SIGNALS_FILE = "signals.yaml"
CAP_SEVERITY_LEVELS = {"Extreme": "I", "Severe": "II", "Moderate": "III", "Minor": "IV"}


class SignalRule(Strict):
    key: str = Field(pattern=KEY_PATTERN)
    name: Text
    kind: str = Field(pattern=KEY_PATTERN)
    type: str = Field(pattern=KEY_PATTERN, description="The incident type a matching signal opens.")
    sources: list[str] = Field(default_factory=list, description="Sources allowed to send it; empty: any.")
    dedupe: str = Field(default="{kind}:{area}", description="Template over the payload's fields.")
    window: str = "PT6H"
    cap: bool = Field(default=False, description="The payload carries a CAP alert; its severity gives the level.")
    title: Text

    def template_fields(self) -> set[str]:
        names: set[str] = set()
        for template in (self.dedupe, self.title.zh, self.title.en):
            names |= {name for _, name, _, _ in string.Formatter().parse(template) if name}
        return names


class SignalRules(Strict):
    version: int = Field(ge=1)
    rules: list[SignalRule] = Field(min_length=1)

    def for_kind(self, kind: str) -> SignalRule | None:
        return next((rule for rule in self.rules if rule.kind == kind), None)
