"""The kill test's receiver: ``python -m tests.integration.webhooks_in.receiver PORT`` serves the
hub's API and runs its background workers (the webhook normaliser among them) exactly as
``cadastre serve --no-schedule`` does, with the test connector installed first. Settings come from
``CADASTRE_*`` variables, as for the command.

It imports everything, then waits for a line on its standard input before it opens the store and
listens: the test keeps one waiting, so a restart after a kill costs the start of a hub, not the
seconds of Python imports.
"""

from __future__ import annotations

import asyncio
import sys

from cadastre.bootstrap import bootstrap
from cadastre.cli.serve import _serve
from tests import webhook_connector


async def main(port: int) -> None:
    webhook_connector.install()
    hub = await bootstrap(migrate=False)  # the test migrated the file; a restart need not
    try:
        await _serve(hub, "127.0.0.1", port, schedule=False)
    finally:
        await hub.close()


if __name__ == "__main__":
    sys.stdin.readline()  # "go"
    asyncio.run(main(int(sys.argv[1])))
