from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import CurrentUser, SessionDep
from core.errors import NotFound, PlanInvalid, UnknownIncidentType
from core.plans import current_plan_text, list_types, parse_plan_text, registry
from core.settings import get_settings

router = APIRouter(tags=["plans"])


@router.get("/api/process-defs")
def plans(principal: CurrentUser) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key in list_types():
        try:
            plan = parse_plan_text(current_plan_text(key), f"{key}.yaml")
        except PlanInvalid as exc:
            # One broken file must not hide the plans that work; it is listed with what is wrong.
            out.append({"key": key, "valid": False, "problems": exc.details or [exc.message]})
            continue
        out.append({"key": plan.key, "name": plan.name.model_dump(), "category": plan.category.value,
                    "version": plan.version, "default_level": plan.default_level, "code_prefix": plan.code_prefix,
                    "steps": len(plan.steps()), "valid": True})
    return out


@router.get("/api/process-defs/{type_key}")
def plan(type_key: str, principal: CurrentUser) -> dict[str, Any]:
    try:
        text_ = current_plan_text(type_key)
    except UnknownIncidentType:
        raise NotFound(f"no response plan '{type_key}'") from None
    return parse_plan_text(text_, f"{type_key}.yaml").model_dump(mode="json", by_alias=True)


@router.get("/api/departments")
def departments(principal: CurrentUser) -> list[dict[str, Any]]:
    # Endpoint names stay inside Baton: they name where a department's system is, not for other users.
    return [d.model_dump(mode="json", exclude={"endpoint"}) for d in registry().departments]


@router.get("/api/health")
def health(session: SessionDep) -> JSONResponse:
    """Database and Prefect reachable (no login: load balancers and monitors call it)."""
    import httpx

    status: dict[str, Any] = {}
    try:
        session.execute(text("SELECT 1"))
        status["database"] = "ok"
    except Exception as exc:
        status["database"] = f"error: {type(exc).__name__}"
    api_url = get_settings().resolved_prefect_api_url()
    if api_url:
        try:
            ok = httpx.get(f"{api_url.rstrip('/')}/health", timeout=3).status_code == 200
            status["prefect"] = "ok" if ok else "error"
        except httpx.HTTPError as exc:
            status["prefect"] = f"error: {type(exc).__name__}"
    else:
        status["prefect"] = "not configured"
    status["ok"] = status["database"] == "ok" and status["prefect"] == "ok"
    return JSONResponse(status, status_code=200 if status["ok"] else 503)
