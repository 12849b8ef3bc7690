"""`fab status` on one host: release, health, fps and model, and the update agent's report if it runs one."""
from __future__ import annotations

import json

from deploy.errors import DeployError
from deploy.host.layout import AGENT_STATUS
from deploy.outline import Stages
from deploy.report import OK, HostResult
from deploy.ssh import quote
from deploy.steps import HostSteps


def status_work(steps: HostSteps, result: HostResult, stages: Stages) -> None:
    stages.enter("health")
    if steps.facts.current is None:
        raise DeployError("nothing deployed")
    healthz = steps.wait_healthy(0)
    model = healthz.get("model") or {}
    result.status = OK
    result.detail = {"fps": healthz.get("fps"), "model": model.get("name"), "model_version": model.get("version"),
                     "sha256": model.get("sha256"), "uptime_s": healthz.get("uptime_s"), "agent": agent_status(steps)}


def agent_status(steps: HostSteps) -> dict | None:
    """The update agent's status file (docs/ota.md), if the host runs one."""
    path = f"{steps.layout.root}/{AGENT_STATUS}"
    text = steps.remote.run(f"cat {quote(path)} 2>/dev/null || true").strip()
    try:
        return json.loads(text) if text else None
    except ValueError:
        return {"state": "unreadable", "last_error": f"{path} is damaged"}
