"""The spans a test finishes, in memory (``tests.spans``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.spans import captured


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    yield from captured()
