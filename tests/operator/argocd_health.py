"""Run the chart's Argo CD health check (charts/modeldeploy/argocd/health.lua) the way Argo CD
does: the object as a Lua table named ``obj``, in Lua 5.1 (Argo CD's gopher-lua speaks 5.1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lupa import lua51

from tests.conftest import REPO_ROOT

HEALTH_LUA = REPO_ROOT / "charts" / "modeldeploy" / "argocd" / "health.lua"


@dataclass(frozen=True)
class Health:
    status: str
    message: str


def argocd_health(obj: dict[str, Any]) -> Health:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=False)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    # Argo CD runs the script as a chunk whose return value is the health table.
    result = runtime.execute(HEALTH_LUA.read_text())
    return Health(status=str(result["status"]), message=str(result["message"] or ""))
