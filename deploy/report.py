"""The per-host outcome of a fleet run, as a table for people and JSON for scripts."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

OK, SKIPPED, FAILED, ROLLED_BACK, CANCELLED = "OK", "SKIPPED", "FAILED", "ROLLED_BACK", "CANCELLED"
INTERRUPTED = "INTERRUPTED"    # Ctrl-C stopped the host's deploy (before the switch, unless abandoned)
DRY_RUN = "DRY-RUN"            # a dry run went through every stage without touching the host
SUCCESS = (OK, SKIPPED, DRY_RUN)


@dataclass
class HostResult:
    host: str
    status: str = FAILED
    old: str | None = None         # the release that was current before
    new: str | None = None         # the release current after (the old one again after a rollback)
    seconds: float = 0.0
    stage: str | None = None       # where it stopped (FAILED, ROLLED_BACK)
    reason: str | None = None      # one line
    detail: dict | None = None     # extras, e.g. health for `fab status`

    @property
    def ok(self) -> bool:
        return self.status in SUCCESS


def table(results: list[HostResult]) -> str:
    rows = [("HOST", "RELEASE", "TIME", "RESULT")]
    for r in results:
        release = f"{r.old or '-'} → {r.new or '-'}" if r.old != r.new else (r.new or "-")
        outcome = r.status if r.reason is None else f"{r.status} ({r.stage + ': ' if r.stage else ''}{r.reason})"
        rows.append((r.host, release, f"{r.seconds:.1f}s", outcome))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3] for row in rows]
    failed = sum(not r.ok for r in results)
    lines.append(f"{len(results) - failed} of {len(results)} hosts ok" + (f", {failed} not" if failed else ""))
    return "\n".join(lines)


def to_json(results: list[HostResult]) -> str:
    return json.dumps([asdict(r) for r in results], indent=2)
