"""Plans as the engine sees them: the shipped files, and the frozen version each incident was opened with."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from core.plans.models import PlanVersion
from core.platform.errors import PlanInvalid, UnknownIncidentType
from core.platform.settings import get_settings
from process_defs.schema import KEY_PATTERN, DepartmentRegistry, IncidentType, StepKind
from process_defs.signals import SIGNALS_FILE, SignalRules
from process_defs.validation import REGISTRY_FILE, load_registry, load_signal_rules, parse_plan

# Parsed registries and plans by what they were parsed from: a registry by its file's digest, a plan by its text,
# file name, `stored` and the digest of the registry it was checked against. The same text under the same registry
# parses to the same plan, so nothing here goes stale; what changes is only which registry a folder holds now
# (`_registry`, by folder, read again when its cache is cleared). Each map is emptied when full.
_REGISTRIES: dict[str, DepartmentRegistry] = {}
_PLANS: dict[tuple[str, str, bool, str], IncidentType] = {}
_PLANS_HELD = 256
_REGISTRIES_HELD = 16


@lru_cache(maxsize=4)
def _registry(plans_dir: str) -> tuple[DepartmentRegistry, str]:
    """The folder's registry and the digest of its file."""
    path = Path(plans_dir) / REGISTRY_FILE
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        digest = ""  # load_registry says why it cannot be read
    found = _REGISTRIES.get(digest) if digest else None
    if found is None:
        found, problems = load_registry(path)
        if found is None:
            raise PlanInvalid("; ".join(str(p) for p in problems))
        if len(_REGISTRIES) >= _REGISTRIES_HELD:
            _REGISTRIES.clear()
        _REGISTRIES[digest] = found
    return found, digest


def registry() -> DepartmentRegistry:
    return _registry(str(get_settings().plans_dir))[0]


def current_plan_text(type_key: str) -> str:
    # Only a plain key names a plan: no path separators, dots or anything else that reaches outside the folder.
    if not re.fullmatch(KEY_PATTERN, type_key) or type_key not in list_types():
        raise UnknownIncidentType(f"no response plan for incident type '{type_key[:64]}'")
    path = get_settings().plans_dir / f"{type_key}.yaml"
    if not path.is_file():
        raise UnknownIncidentType(f"no response plan for incident type '{type_key}'")
    return path.read_text(encoding="utf-8")


def parse_plan_text(text: str, file: str, stored: bool = False) -> IncidentType:
    """A plan from its text; `stored` for a version an incident was opened on (see `parse_plan`). Parsed once
    per process for each registry it is checked against."""
    current, digest = _registry(str(get_settings().plans_dir))
    key = (text, file, stored, digest)
    plan = _PLANS.get(key)
    if plan is None:
        plan, problems = parse_plan(text, file, current, stored=stored)
        if plan is None:
            raise PlanInvalid("; ".join(str(p) for p in problems), details=[str(p) for p in problems])
        if len(_PLANS) >= _PLANS_HELD:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def list_types() -> list[str]:
    return sorted(p.stem for p in get_settings().plans_dir.glob("*.yaml") if p.name not in (REGISTRY_FILE,
                                                                                          SIGNALS_FILE))


def current_plans() -> tuple[list[tuple[str, IncidentType]], dict[str, list[str]]]:
    """The plans that parse, and the problems of those that do not: one broken file must not hide the
    plans that work (from the office's trigger form, the plan list, the analytics filters)."""
    good: list[tuple[str, IncidentType]] = []
    broken: dict[str, list[str]] = {}
    for key in list_types():
        try:
            good.append((key, parse_plan_text(current_plan_text(key), f"{key}.yaml")))
        except PlanInvalid as exc:
            broken[key] = [str(item) for item in exc.details] if isinstance(exc.details, list) else [exc.message]
    return good, broken


def task_departments(plan: IncidentType) -> set[str]:
    """The departments a plan gives tasks to: those of its human steps (its automated steps are Baton's own)."""
    return {step.department for _, step in plan.steps() if step.kind == StepKind.human}


def departments_given_tasks(session: Session) -> dict[str, list[str]]:
    """Each department that a plan in use (`plan_in_use`, for every incident type) gives tasks to, with the
    incident types whose plans do, in key order. A plan that does not parse opens no incident and is left out
    (`current_plans` reports it)."""
    found: dict[str, list[str]] = {}
    for key in list_types():
        try:
            plan, _ = plan_in_use(session, key)
        except PlanInvalid:
            continue
        for department in sorted(task_departments(plan)):
            found.setdefault(department, []).append(key)
    return dict(sorted(found.items()))


def latest_accepted(session: Session, type_key: str) -> PlanVersion | None:
    """The newest version of `type_key` a planner accepted from a proposal (stored only in the database)."""
    return session.exec(select(PlanVersion).where(PlanVersion.type == type_key, PlanVersion.source == "accepted")
                        .order_by(col(PlanVersion.version).desc(), col(PlanVersion.id).desc()).limit(1)).first()


def plan_in_use(session: Session, type_key: str) -> tuple[IncidentType, str]:
    """The plan a new incident of `type_key` would follow, and where it is from ("file" or "accepted"),
    by the rule of `snapshot_current` but without storing anything."""
    plan = parse_plan_text(current_plan_text(type_key), f"{type_key}.yaml")
    accepted = latest_accepted(session, type_key)
    if accepted is not None and accepted.version >= plan.version:
        return parse_plan_text(accepted.content, f"{type_key}.yaml"), "accepted"
    return plan, "file"


def snapshot_current(session: Session, type_key: str) -> tuple[PlanVersion, IncidentType]:
    """Store (once) the current plan text of `type_key` and return it with its parsed plan.

    The current plan is the shipped file, unless a planner accepted a newer version from a proposal: the
    higher version number wins, and an accepted version wins a tie with the file (it is already in use)."""
    text = current_plan_text(type_key)
    plan = parse_plan_text(text, f"{type_key}.yaml")
    accepted = latest_accepted(session, type_key)
    if accepted is not None and accepted.version >= plan.version:
        return accepted, parse_plan_text(accepted.content, f"{type_key}.yaml")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    row = session.exec(select(PlanVersion).where(PlanVersion.type == type_key, PlanVersion.version == plan.version,
                                                 PlanVersion.digest == digest)).first()
    if row is None:
        row = PlanVersion(type=type_key, version=plan.version, digest=digest, content=text)
        session.add(row)
        session.flush()
    return row, plan


def store_accepted(session: Session, type_key: str, text: str) -> PlanVersion:
    """Store `text` (a valid plan of `type_key`) as an accepted version; new incidents of the type use it."""
    plan = parse_plan_text(text, f"{type_key}.yaml")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    row = session.exec(select(PlanVersion).where(PlanVersion.type == type_key, PlanVersion.version == plan.version,
                                                 PlanVersion.digest == digest)).first()
    if row is None:
        row = PlanVersion(type=type_key, version=plan.version, digest=digest, content=text, source="accepted")
    else:
        row.source = "accepted"
    session.add(row)
    session.flush()
    return row


# Parsed plan versions by (database, plans folder, version id). A stored version is never changed (nothing updates
# `plan_version`), so a process reads and parses each one once, not on every request and every wake-up.
_VERSIONS: dict[tuple[str, str, int], IncidentType] = {}
_VERSIONS_HELD = 512


def plan_for_version(session: Session, plan_version_id: int) -> IncidentType:
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    key = (str(engine.url), str(get_settings().plans_dir), plan_version_id)
    plan = _VERSIONS.get(key)
    if plan is None:
        row = session.get(PlanVersion, plan_version_id)
        if row is None:
            raise PlanInvalid(f"plan version {plan_version_id} is missing")
        plan = parse_plan_text(row.content, f"{row.type}.yaml", stored=True)
        if len(_VERSIONS) >= _VERSIONS_HELD:
            _VERSIONS.clear()
        _VERSIONS[key] = plan
    return plan


def forget_versions() -> None:
    """Forget the parsed versions (the tests' databases come and go under the same process)."""
    _VERSIONS.clear()


def forget_plans() -> None:
    """Forget every parsed registry, plan and version, and which registry each folder holds."""
    _registry.cache_clear()
    _REGISTRIES.clear()
    _PLANS.clear()
    _VERSIONS.clear()


@lru_cache(maxsize=4)
def _signal_rules(plans_dir: str) -> SignalRules:
    plans = {key: parse_plan_text(current_plan_text(key), f"{key}.yaml") for key in list_types()}
    rules, problems = load_signal_rules(Path(plans_dir) / SIGNALS_FILE, plans)
    if rules is None:
        raise PlanInvalid("; ".join(str(p) for p in problems))
    return rules


def signal_rules() -> SignalRules:
    return _signal_rules(str(get_settings().plans_dir))
