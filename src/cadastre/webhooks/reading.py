"""What one batch of the webhook normaliser is made of (``normalise.py`` runs it): each stored
webhook read through its connector, the readable ones as pages for ``SyncRunner``, and the
quarantine entries of what could not be read."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cadastre.errors import ContractError
from cadastre.ports import InboxEntry, RawPage, RawRecord

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

    from cadastre.mapping import RecordMapper
    from cadastre.ports import SourceConnector

PAGE_STREAM = "webhooks-in"  # the cursor the runner keeps for the webhook pages
CURSOR_KEY = "inbox_position"
MAX_PAGE_RECORDS = 200  # a page is CPU work on the API's event loop: kept short
MAX_BODY_TEXT = 256 * 1024  # of a malformed body, kept in its quarantine entry

Pages = list[tuple[list[InboxEntry], list[RawRecord]]]


@dataclass
class Read:
    """One entry as its connector read it."""

    entry: InboxEntry
    records: list[RawRecord] = field(default_factory=list)
    unreadable: list[RawRecord] = field(default_factory=list)  # records with a problem
    malformed: str | None = None  # why the whole body could not be read (quarantined)
    error: str | None = None  # why the connector failed (tried again later)


class InboxPages:
    """The webhook pages as a ``SourceConnector`` for ``SyncRunner.run``: after a transient
    store failure the runner reads again from the last committed page's cursor."""

    def __init__(self, connector: SourceConnector, stream: str,
                 pages: Pages) -> None:  # fmt: skip
        self.system = connector.system
        self._stream = stream
        self._pages = pages

    def streams(self) -> Sequence[str]:
        return [self._stream]

    async def read(self, stream: str, cursor: Mapping[str, Any] | None) -> AsyncIterator[RawPage]:
        # The first cursor is the polling one of the stream (no CURSOR_KEY): start at the start.
        after = (cursor or {}).get(CURSOR_KEY, 0)
        for entries, records in self._pages:
            if entries[-1].position > after:
                yield RawPage(PAGE_STREAM, records, {CURSOR_KEY: entries[-1].position})

    async def aclose(self) -> None:
        return None


async def read_entry(
    reader: Callable[..., Awaitable[Sequence[RawRecord]]], entry: InboxEntry
) -> Read:
    read = Read(entry)
    try:
        records = await reader(entry.body, entry.headers)
    except (ValueError, ContractError) as exc:  # the body cannot be read: quarantined whole
        read.malformed = str(exc) or type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - any connector failure is retried, never fatal
        read.error = f"{type(exc).__name__}: {exc}"
    else:
        for record in records:
            (read.unreadable if record.problem is not None else read.records).append(record)
    return read


def pages_of(reads: list[Read]) -> Pages:
    """Consecutive entries per page, until a record key would come twice (a page holds one
    version of a record: the runner would quarantine the older as duplicate_in_page) or the
    page is full."""
    pages: Pages = []
    keys: set[tuple[str, str | None]] = set()
    for read in reads:
        mine = {(r.stream, r.external_id) for r in read.records if r.external_id is not None}
        if not pages or keys & mine or len(pages[-1][1]) + len(read.records) > MAX_PAGE_RECORDS:
            pages.append(([], []))
            keys = set()
        pages[-1][0].append(read.entry)
        pages[-1][1].extend(read.records)
        keys |= mine
    return pages


def main_stream(connector: SourceConnector, mappers: Mapping[str, RecordMapper]) -> str:
    for stream in connector.streams():
        if stream in mappers:
            return stream
    return next(iter(mappers))


def malformed_body(entry: InboxEntry, stream: str, entity: str, why: str) -> dict[str, Any]:
    text = entry.body[:MAX_BODY_TEXT].decode(errors="replace")
    body: dict[str, str] = {"body": text}
    if "\ufffd" in text or "\x00" in text:  # not UTF-8, or text PostgreSQL cannot keep: exact
        body = {"body_base64": base64.b64encode(entry.body[:MAX_BODY_TEXT]).decode()}
    return {
        "entity": entity, "external_id": None, "stream": stream,
        "reason": storable(f"webhook {entry.message_id} cannot be read: {why}"),
        "payload": {"message_id": entry.message_id, "headers": dict(entry.headers), **body},
    }  # fmt: skip


def malformed_record(entry: InboxEntry, record: RawRecord, entity: str) -> dict[str, Any]:
    return {
        "entity": entity, "external_id": _key(record.external_id), "stream": record.stream,
        "reason": storable(f"webhook {entry.message_id}: {record.problem}"),
        "payload": {"message_id": entry.message_id, "data": storable(dict(record.data))},
    }  # fmt: skip


def _key(external_id: str | None) -> str | None:
    # the quarantine's column holds 200 characters; PostgreSQL refuses more (SQLite keeps them)
    return None if external_id is None else storable(external_id)[:200]


def storable(value: Any) -> Any:
    """``value`` with every NUL character of its text (keys too) replaced by U+FFFD. PostgreSQL
    keeps none in text or jsonb: one would fail the transaction that settles the batch, at
    every round, and hold up every webhook of the connection behind it."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value
