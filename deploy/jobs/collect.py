"""`fab collect` on one host: its new samples into INBOX/<host>/ (deploy/collect.py does the work)."""
from __future__ import annotations

from typing import Callable

from deploy.collect import CollectOptions, collect_host
from deploy.errors import DeployError
from deploy.outline import Stages
from deploy.report import OK, HostResult
from deploy.steps import HostSteps


def collect_work(options: CollectOptions, say: Callable[[str], None]):
    def work(steps: HostSteps, result: HostResult, stages: Stages) -> None:
        stages.enter("collect")
        counts = collect_host(steps.remote, steps.host, options, lambda text: say(f"[{steps.host.name}] {text}"))
        result.detail = counts
        kept = "kept on the host" if options.keep else f"{counts['deleted']} deleted on the host"
        summary = f"{counts['copied']} new samples ({counts['bytes'] / 1e6:.1f} MB), {kept}"
        if counts["conflicts"]:
            summary += f"; {counts['conflicts']} left on the host: a different file of that name is here"
        if counts["mismatched"]:
            stages.enter("verify")
            raise DeployError(f"{counts['mismatched']} samples did not match their sha256 on the host, which "
                              f"keeps them (run again); {summary}")
        result.status, result.reason = OK, summary
    return work
