"""The layout holds: every module imports, and imports run one way (docs/architecture.md, "Layout and imports").

Top level: `api -> core <- tasks <- flows`; `process_defs` imports nothing of Baton's; nothing imports `deploy/`.
Inside `core/`, each domain imports only the domains below it. Tables (`core/<domain>/models.py`) are the one
exception: they form one schema, so any module may import any domain's tables (a foreign key crosses domains).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["core", "api", "flows", "tasks", "process_defs"]

# What each top-level package may import of Baton's own packages.
TOP_LEVEL = {
    "process_defs": set(),
    "core": {"process_defs"},
    "api": {"core", "process_defs"},
    "tasks": {"core", "process_defs"},
    "flows": {"core", "tasks", "process_defs"},
}

# core's domains, lowest first; a domain may import the domains listed for it (and itself).
_BELOW_INCIDENTS = {"platform", "plans", "users", "ledger", "outbox", "attachments", "geo", "registers"}
DOMAINS: dict[str, set[str]] = {
    "platform": set(),
    "plans": {"platform"},
    "users": {"platform", "plans"},
    "ledger": {"platform", "plans", "users"},
    "outbox": {"platform", "plans", "users", "ledger"},
    "attachments": {"platform"},
    "geo": {"platform"},
    "registers": {"platform", "plans", "users", "ledger", "geo"},
    "incidents": _BELOW_INCIDENTS,
    "signals": _BELOW_INCIDENTS | {"incidents"},
    "desk": _BELOW_INCIDENTS | {"incidents"},
    "reporting": _BELOW_INCIDENTS | {"incidents"},
    "resources": _BELOW_INCIDENTS | {"incidents"},
    "sharing": _BELOW_INCIDENTS | {"incidents", "reporting"},
    "learning": _BELOW_INCIDENTS | {"incidents", "sharing", "reporting"},
    "reports": _BELOW_INCIDENTS | {"incidents", "sharing", "reporting", "learning"},
    # The one map: layers read from the domains below it (a new layer's domain joins this set).
    "maps": _BELOW_INCIDENTS | {"incidents", "sharing", "reporting", "prevention"},
    "prevention": _BELOW_INCIDENTS | {"incidents"},
}
# Modules at core's top that gather every domain (they sit above all of them).
CORE_AGGREGATES = {"core.all_models", "core.migrations.env"}


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, package + "."):
            if ".migrations.versions" in info.name or info.name == "core.migrations.env" \
                    or info.name.endswith(".__main__"):  # running it is its job
                continue
            names.append(info.name)
    return sorted(names)


def _source(module: str) -> Path:
    path = ROOT / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _is_module(name: str) -> bool:
    path = ROOT / Path(*name.split("."))
    return path.is_dir() or path.with_suffix(".py").exists()


def _imports(module: str) -> list[tuple[int, str]]:
    """Every Baton module this one imports (absolute names), with the line, lazy imports included."""
    tree = ast.parse(_source(module).read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from core.incidents import engine` imports a module: name it.
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                      if _is_module(f"{node.module}.{alias.name}")]
    return [(line, name) for line, name in found if name.split(".")[0] in TOP_LEVEL or name == "deploy"]


def _domain(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "core" and len(parts) > 2 and parts[1] in DOMAINS else None


@pytest.mark.parametrize("module", _modules())
def test_every_module_imports(module: str) -> None:
    importlib.import_module(module)


def test_imports_run_one_way() -> None:
    wrong: list[str] = []
    for module in _modules():
        top = module.split(".")[0]
        for line, target in _imports(module):
            target_top = target.split(".")[0]
            where = f"{_source(module).relative_to(ROOT)}:{line} imports {target}"
            if target_top == "deploy":
                wrong.append(f"{where}: nothing imports deploy/")
            elif target_top != top and target_top not in TOP_LEVEL[top]:
                wrong.append(f"{where}: {top} may import only {sorted(TOP_LEVEL[top]) or 'nothing of Baton'}")
            elif top == "core" and module not in CORE_AGGREGATES:
                source_domain, target_domain = _domain(module), _domain(target)
                if ".models." in target + ".":
                    continue  # tables form one schema
                if target == "core.all_models" or target.startswith("core.migrations"):
                    wrong.append(f"{where}: only the aggregates import every table")
                elif source_domain and target_domain and target_domain != source_domain \
                        and target_domain not in DOMAINS[source_domain]:
                    wrong.append(f"{where}: {source_domain} sits below {target_domain}")
    assert not wrong, "\n".join(wrong)


def test_every_domain_is_known() -> None:
    on_disk = {p.name for p in (ROOT / "core").iterdir() if (p / "__init__.py").exists()} - {"migrations"}
    assert on_disk == set(DOMAINS), "a domain folder in core/ must be placed in DOMAINS (and the architecture doc)"
