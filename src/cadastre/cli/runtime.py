"""How every command runs: one event loop, one Hub, and errors turned into a clear line and an
exit code (1 for a refusal or a failed check, 2 for bad input) instead of a traceback.

The event loop is uvloop's where it is installed (``uvicorn[standard]`` brings it everywhere but
Windows and PyPy), asyncio's own elsewhere: on asyncio's loop a webhook cost the server about a
fifth more CPU (sockets, callbacks, timers), and ``uvicorn.run`` picks uvloop the same way, so
``cadastre serve`` runs on what any uvicorn deployment runs on. Every library the hub
uses on it (aiosqlite, psycopg, redis.asyncio, nats-py, httpx through anyio) supports it.

Both consoles have markup, emoji and highlighting off: tenant names, key labels, connection
fields, file names and error messages are data, and data is printed as it is (a name like
``Acme [/bold] Co`` must neither crash rich nor restyle the output). The CLI's own styling goes
through ``style=`` or :class:`rich.text.Text`, never inline ``[tags]``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from cadastre.bootstrap import Hub, bootstrap
from cadastre.config import Settings, describe_validation_error
from cadastre.errors import CadastreError, ConfigurationError, NotFound, Transient

console = Console(markup=False, emoji=False, highlight=False)
err_console = Console(stderr=True, markup=False, emoji=False, highlight=False)

T = TypeVar("T")


def print_error(message: str) -> None:
    """``error: <message>`` on stderr, the message printed verbatim."""
    err_console.print(Text.assemble(("error:", "red"), " ", message), soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: <message>`` and leave with ``code`` (2: bad input, 1: refused or failed)."""
    print_error(message)
    raise typer.Exit(code)


def describe_os_error(exc: OSError, doing: str = "cannot use") -> str:
    """``cannot read x.yaml: No such file or directory``: strerror and file name, no traceback."""
    reason = exc.strerror or exc.__class__.__name__
    if exc.filename is None:
        return reason
    return f"{doing} {exc.filename}: {reason}"


def read_text_file(path: Path, what: str = "") -> str:
    """A UTF-8 file's text, or exit 2 with a one-line reason (missing, a folder, not UTF-8...)."""
    label = f"{what} {path}" if what else str(path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail(f"{label} is not UTF-8 text")
    except OSError as exc:
        fail(f"cannot read {label}: {exc.strerror or exc.__class__.__name__}")


def write_text_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8, or exit 2 with a one-line reason."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc.__class__.__name__}")


def load_settings() -> Settings:
    """``Settings()``, with a bad ``CADASTRE_*`` value turned into a ``ConfigurationError`` that
    names each bad setting (values are not echoed: a setting may hold a password)."""
    try:
        return Settings()
    except ValidationError as exc:
        message = describe_validation_error(
            exc, lambda field: "CADASTRE_" + field.replace(".", "_").upper()
        )
        raise ConfigurationError(f"invalid settings: {message}") from None


@asynccontextmanager
async def open_hub(overrides: Mapping[str, Any] | None = None) -> AsyncIterator[Hub]:
    """A hub on ``Settings()``, with ``overrides`` (a command that is its own operator, as the
    demo is, sets what it needs here rather than in the environment)."""
    settings = load_settings()
    if overrides:
        settings = settings.model_copy(update=overrides)
    hub = await bootstrap(settings)
    try:
        yield hub
    finally:
        await hub.close()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` when uvloop is installed, else None (asyncio's loop)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop ``loop_factory`` picks."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def run(work: Callable[[Hub], Awaitable[T]], *, overrides: Mapping[str, Any] | None = None) -> T:
    async def main() -> T:
        async with open_hub(overrides) as hub:
            return await work(hub)

    try:
        return run_loop(main())
    except (ConfigurationError, NotFound) as exc:
        fail(str(exc), 2)
    except CadastreError as exc:
        hint = " (temporary; try again)" if isinstance(exc, Transient) else ""
        fail(f"{exc}{hint}", 1)
    except UnicodeDecodeError as exc:
        # a backstop: commands read their files themselves and say which one
        fail(f"a file is not UTF-8 text ({exc.reason} at byte {exc.start})", 2)
    except OSError as exc:
        # a backstop for a file the command did not open itself; connection failures arrive
        # as StoreUnavailable above, not here
        fail(describe_os_error(exc), 2)
