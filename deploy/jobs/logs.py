"""`fab logs` on one host: the daemon's recent log (journald under systemd, else the pidfile manager's file)."""
from __future__ import annotations

import sys

from deploy.outline import Stages
from deploy.report import OK, HostResult
from deploy.steps import HostSteps


def logs_work(lines: int):
    def work(steps: HostSteps, result: HostResult, stages: Stages) -> None:
        stages.enter("logs")
        text = steps.logs(lines)
        print(f"==> {steps.host.name} <==\n{text.rstrip()}\n", file=sys.stdout, flush=True)
        result.status = OK
    return work
