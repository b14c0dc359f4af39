"""The prevention campaigns: what each inspects, when its schedule runs, and how long its tasks are given.

One home for a campaign's schedule: `flows.prevention` serves these crons in the embedded stack, and
`deploy/prefect.yaml` declares the same ones (tests/test_prevention.py holds them equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from core.registers.models import RegisterKind, RiskKind

TIMEZONE = "Asia/Shanghai"


@dataclass(frozen=True)
class Campaign:
    key: str
    name_zh: str
    name_en: str
    cron: str  # in TIMEZONE
    slug: str  # the schedule's name on Prefect: served and deployed alike, so either can update what the other made
    register_kind: RegisterKind
    risk_kinds: tuple[RiskKind, ...]  # for risk points: the kinds inspected (empty: every entry of the register)
    inspect_days: int  # an inspection is due this long after its slot
    rectify_days: int  # a rectification is due this long after the finding

    @property
    def inspect_within(self) -> timedelta:
        return timedelta(days=self.inspect_days)

    @property
    def rectify_within(self) -> timedelta:
        return timedelta(days=self.rectify_days)


CAMPAIGNS: dict[str, Campaign] = {c.key: c for c in (
    # 汛前检查: before the flood season (主汛期 from May or June), every waterlogging and geohazard point, once a year.
    Campaign("flood_precheck", "汛前检查", "Pre-flood-season inspection", "0 9 1 4 *", "before-flood-season",
             RegisterKind.risk_point,
             (RiskKind.waterlogging, RiskKind.geohazard), inspect_days=30, rectify_days=15),
    # 隐患排查: every month, the places where a hazard harms many (危化企业, 人员密集场所, 危旧房).
    Campaign("hazard_check", "隐患排查", "Hazard check", "0 9 1 * *", "monthly", RegisterKind.risk_point,
             (RiskKind.hazardous_chemicals, RiskKind.crowded_place, RiskKind.dilapidated_housing),
             inspect_days=10, rectify_days=30),
    # 应急演练: each rescue team drills once a quarter; what the drill shows wanting is rectified.
    Campaign("drill_cadence", "应急演练", "Drill", "0 9 1 1,4,7,10 *", "quarterly", RegisterKind.team, (),
             inspect_days=30, rectify_days=30),
)}
