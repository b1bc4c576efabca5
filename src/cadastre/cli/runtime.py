"""How every command runs: one event loop, one Hub, and errors turned into a clear line and an
exit code (1 for a refusal or a failed check, 2 for bad input) instead of a traceback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import typer
from rich.console import Console

from cadastre.bootstrap import Hub, bootstrap
from cadastre.config import Settings
from cadastre.errors import CadastreError, ConfigurationError, NotFound, Transient

console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")


@asynccontextmanager
async def open_hub() -> AsyncIterator[Hub]:
    hub = await bootstrap(Settings())
    try:
        yield hub
    finally:
        await hub.close()


def run(work: Callable[[Hub], Awaitable[T]]) -> T:
    async def main() -> T:
        async with open_hub() as hub:
            return await work(hub)

    try:
        return asyncio.run(main())
    except (ConfigurationError, NotFound) as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    except CadastreError as exc:
        hint = " (temporary; try again)" if isinstance(exc, Transient) else ""
        err_console.print(f"[red]error:[/red] {exc}{hint}", highlight=False)
        raise typer.Exit(1) from None
