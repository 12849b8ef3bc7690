"""`fab rollback` on one host: the host's own rollback (deploy/host/install.py), under the deploy lock."""
from __future__ import annotations

from deploy.errors import DeployError
from deploy.outline import Stages
from deploy.report import OK, HostResult
from deploy.steps import HostSteps


def rollback_work(to: str | None, health_timeout: float):
    """Return to `to` (default: the newest release older than the current one that did not fail); if that
    one is not healthy, it is marked failed and the host goes back to where it was. A release marked failed
    that the user chose with `to` and that proves healthy now (its failure was passing) loses its mark."""
    def work(steps: HostSteps, result: HostResult, stages: Stages) -> None:
        stages.enter("rollback")
        if steps.facts.current is None:
            raise DeployError("nothing deployed")
        outcome = steps.rollback(to, health_timeout)
        result.new = outcome["new"]
        if not outcome["ok"]:
            stages.enter(outcome["stage"])
            raise DeployError(outcome["reason"])
        result.status, result.reason = OK, outcome["reason"]
    return work
