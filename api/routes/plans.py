from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import CurrentUser, SessionDep
from core.plans.store import current_plans, plan_in_use, registry
from core.platform.errors import NotFound, UnknownIncidentType
from core.platform.settings import get_settings
from core.platform.tls import tls_context

router = APIRouter(tags=["plans"])


@router.get("/api/process-defs")
def plans(principal: CurrentUser) -> list[dict[str, Any]]:
    good, broken = current_plans()
    # A broken file is listed, in key order with the others, with what is wrong with it.
    out: list[dict[str, Any]] = [
        {"key": plan.key, "name": plan.name.model_dump(), "category": plan.category.value, "version": plan.version,
         "default_level": plan.default_level, "code_prefix": plan.code_prefix, "steps": len(plan.steps()),
         "valid": True} for _key, plan in good]
    out.extend({"key": key, "valid": False, "problems": problems} for key, problems in broken.items())
    out.sort(key=lambda item: str(item["key"]))
    return out


@router.get("/api/process-defs/{type_key}")
def plan(type_key: str, principal: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """The plan new incidents of the type follow: the shipped file, or a newer version a planner accepted."""
    try:
        found, source = plan_in_use(session, type_key)
    except UnknownIncidentType:
        raise NotFound(f"no response plan '{type_key}'") from None
    return {**found.model_dump(mode="json", by_alias=True), "source": source}


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
            ok = httpx.get(f"{api_url.rstrip('/')}/health", timeout=3, verify=tls_context()).status_code == 200
            status["prefect"] = "ok" if ok else "error"
        except httpx.HTTPError as exc:
            status["prefect"] = f"error: {type(exc).__name__}"
    else:
        status["prefect"] = "not configured"
    status["ok"] = status["database"] == "ok" and status["prefect"] == "ok"
    return JSONResponse(status, status_code=200 if status["ok"] else 503)
