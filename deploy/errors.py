"""The deploy's user-facing failures: each is one line, and names the stage of a host's deploy it stopped at."""
from __future__ import annotations

from device.errors import UserError


class DeployError(UserError):
    """A deploy that cannot go on; `stage` says where (connect, preflight, build, upload, …)."""

    stage = "deploy"

    def __init__(self, message: str, stage: str | None = None) -> None:
        super().__init__(message)
        if stage is not None:
            self.stage = stage


class InventoryError(DeployError):
    """The inventory file or the host selection is wrong."""

    stage = "inventory"


class OptionError(DeployError):
    """A command-line option has a value that makes no sense."""

    stage = "options"


class ModelError(DeployError):
    """The model fails local validation, so it is never shipped."""

    stage = "build"


class ConnectError(DeployError):
    """The host cannot be reached, refuses our key, or shows a host key we do not trust."""

    stage = "connect"


class HostKeyError(ConnectError):
    """The host's key is unknown or changed: refused, never accepted silently."""
