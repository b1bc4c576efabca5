"""The operations console (issue 9, docs/console.md): server-rendered pages over the hub's
services, for operators signed in with a password (``cadastre operators``). ``create_app``
mounts ``create_console(hub)`` at ``/console``."""

from cadastre.console.app import CONTENT_SECURITY_POLICY, create_console
from cadastre.console.health import Health, judge

__all__ = ["CONTENT_SECURITY_POLICY", "Health", "create_console", "judge"]
