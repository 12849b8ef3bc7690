"""`fab status` on one host: release, health, fps and model."""
from __future__ import annotations

from deploy.errors import DeployError
from deploy.outline import Stages
from deploy.report import OK, HostResult
from deploy.steps import HostSteps


def status_work(steps: HostSteps, result: HostResult, stages: Stages) -> None:
    stages.enter("health")
    if steps.facts.current is None:
        raise DeployError("nothing deployed")
    healthz = steps.wait_healthy(0)
    model = healthz.get("model") or {}
    result.status = OK
    result.detail = {"fps": healthz.get("fps"), "model": model.get("name"), "model_version": model.get("version"),
                     "sha256": model.get("sha256"), "uptime_s": healthz.get("uptime_s")}
