"""Every log line says where it was written: the current span's trace and span ids, the tenant and
connection of the work (``observe.context``), each only when known; never a stale one."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace

from cadastre.observe import configure_logging, correlation, get_logger, working_for
from cadastre.observe.context import CONNECTION, TENANT, current
from tests.spans import span_exporter

HEX32, HEX16 = r"[0-9a-f]{32}", r"[0-9a-f]{16}"
tracer = trace.get_tracer("tests.observe")


@pytest.fixture(autouse=True)
def sdk() -> None:
    span_exporter()  # the SDK provider, so spans have ids


@pytest.fixture
def json_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    configure_logging("INFO")


@pytest.fixture
def plain_lines() -> Iterator[Callable[[], list[str]]]:
    stream = io.StringIO()
    configure_logging("DEBUG", json=False, stream=stream)
    yield lambda: stream.getvalue().splitlines()
    configure_logging("INFO")


def test_a_line_outside_any_span_or_context_carries_none_of_them(json_lines) -> None:
    get_logger("t").info("bare")
    (line,) = json_lines()
    assert not {"trace_id", "span_id", "tenant", "connection"} & line.keys()


def test_a_line_inside_a_span_and_a_context_carries_all_four(json_lines) -> None:
    with working_for("acme", "mls"), tracer.start_as_current_span("work") as span:
        get_logger("t").info("inside")
    get_logger("t").info("after")
    inside, after = json_lines()
    ids = span.get_span_context()
    assert inside["trace_id"] == f"{ids.trace_id:032x}"
    assert inside["span_id"] == f"{ids.span_id:016x}"
    assert (inside["tenant"], inside["connection"]) == ("acme", "mls")
    assert not {"trace_id", "span_id", "tenant", "connection"} & after.keys()


def test_a_tenant_without_a_connection_omits_the_connection(json_lines) -> None:
    with working_for("acme", "mls"), working_for("acme"):
        get_logger("t").info("tenant-wide")
    (line,) = json_lines()
    assert line["tenant"] == "acme"
    assert "connection" not in line  # not the outer block's: it is not about that connection


def test_an_explicit_extra_wins_over_the_context(json_lines) -> None:
    with working_for("acme", "mls"):
        get_logger("t").info("named", extra={"connection": "other"})
    (line,) = json_lines()
    assert line["connection"] == "other"


def test_the_plain_formatter_appends_them_briefly(plain_lines) -> None:
    with working_for("acme", "mls"), tracer.start_as_current_span("work") as span:
        get_logger("t").info("inside")
    get_logger("t").info("after")
    inside, after = plain_lines()
    trace_id = f"{span.get_span_context().trace_id:032x}"
    assert inside == f"INFO cadastre.t: inside [tenant=acme connection=mls trace={trace_id}]"
    assert after == "INFO cadastre.t: after"


def test_an_invalid_span_gives_no_ids() -> None:
    with trace.use_span(trace.INVALID_SPAN):
        assert correlation() == {}


async def test_two_concurrent_tasks_never_see_each_others_values() -> None:
    """Interleaved at every await, each task logs only its own tenant, connection and trace."""
    records: list[tuple[str, dict[str, str]]] = []
    both_inside = asyncio.Barrier(2)

    async def work(tenant: str, connection: str) -> str:
        with working_for(tenant, connection), tracer.start_as_current_span(connection) as span:
            for _ in range(3):
                await both_inside.wait()  # the other task is inside its own block too
                records.append((connection, correlation()))
                await asyncio.sleep(0)
            trace_id = f"{span.get_span_context().trace_id:032x}"
        records.append((f"{connection} done", correlation()))
        return trace_id

    one, two = await asyncio.gather(work("acme", "mls"), work("globex", "pms"))
    assert one != two
    expected = {"mls": ("acme", one), "pms": ("globex", two)}
    inside = [(name, found) for name, found in records if not name.endswith("done")]
    assert len(inside) == 6
    for name, found in inside:
        tenant, trace_id = expected[name]
        assert found["tenant"] == tenant
        assert found["connection"] == name
        assert found["trace_id"] == trace_id
    for name, found in records:
        if name.endswith("done"):
            assert found == {}, name  # left the block: nothing stale remains
    assert (TENANT.get(), CONNECTION.get(), current()) == (None, None, {})


async def test_a_task_started_inside_inherits_and_one_started_after_does_not() -> None:
    seen: dict[str, dict[str, str]] = {}

    async def look(name: str) -> None:
        seen[name] = current()

    with working_for("acme", "mls"):
        inside = asyncio.ensure_future(look("inside"))
    after = asyncio.ensure_future(look("after"))
    await asyncio.gather(inside, after)
    assert seen == {"inside": {"tenant": "acme", "connection": "mls"}, "after": {}}
