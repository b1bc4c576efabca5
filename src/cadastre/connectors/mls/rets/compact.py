"""Reading RETS replies: the ``<RETS ReplyCode=...>`` envelope, COMPACT / COMPACT-DECODED search
results, COMPACT metadata and multipart GetObject bodies.

COMPACT is read line by line rather than as one XML document: a legacy server that writes one
bad row (a raw ``&``, a column too many) spoils that row, not the page. A row whose value count
differs from the columns' comes back as a ``BadRow`` for the connector to quarantine, never as an
exception; a body without a readable envelope raises ``ReplyUnreadable``.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

_ENVELOPE = re.compile(rb"<RETS\s([^>]*?)/?>", re.S)
_ATTRIBUTE = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("[^"]*"|\'[^\']*\')')
_COUNT = re.compile(rb"<COUNT\s+Records\s*=\s*\"(\d+)\"", re.S)
_DELIMITER = re.compile(rb"<DELIMITER\s+value\s*=\s*\"([0-9A-Fa-f]{1,2})\"", re.S)
_COLUMNS = re.compile(rb"<COLUMNS>(.*?)</COLUMNS>", re.S)
_DATA = re.compile(rb"<DATA>(.*?)</DATA>", re.S)
_MAXROWS = re.compile(rb"<MAXROWS\s*/?>")
_BLOCK = re.compile(rb"<(METADATA-[A-Z_]+)\s([^>]*)>(.*?)</\1>", re.S)
# What a RETS reply starts with: a byte-order mark, whitespace and an XML declaration (and
# comments) are all optional, then the <RETS element itself.
_REPLY_START = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<RETS[\s/>]", re.S
)


class ReplyUnreadable(ValueError):
    """The body is not a RETS reply at all (an HTML error page, a cut-off answer)."""


@dataclass(frozen=True)
class Reply:
    code: int
    text: str


@dataclass(frozen=True)
class BadRow:
    text: str  # the row as sent, for the quarantine
    reason: str


@dataclass(frozen=True)
class SearchResult:
    reply: Reply
    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, str] | BadRow] = field(default_factory=list)
    count: int | None = None
    max_rows: bool = False  # the server stopped at its row cap (or our Limit)

    @property
    def truncated(self) -> bool:
        return self.max_rows or (self.count is not None and self.count > len(self.rows))


@dataclass(frozen=True)
class MetadataBlock:
    kind: str  # METADATA-TABLE, METADATA-LOOKUP_TYPE, ...
    attributes: dict[str, str]
    rows: list[dict[str, str]]


def is_reply(body: bytes) -> bool:
    """Whether ``body`` is a RETS reply by its first bytes, whatever the content type says:
    servers answer text/xml, text/plain or nothing at all. An image or a multipart answer
    never starts with ``<RETS``."""
    return _REPLY_START.match(body[:4096]) is not None


def reply_of(body: bytes) -> Reply:
    match = _ENVELOPE.search(body[:4096])
    if match is None:
        raise ReplyUnreadable("the answer is not a RETS reply (no <RETS> element)")
    attributes = _attributes(match.group(1).decode("utf-8", "replace"))
    try:
        code = int(attributes.get("ReplyCode", ""))
    except ValueError:
        raise ReplyUnreadable("the RETS reply has no numeric ReplyCode") from None
    return Reply(code, attributes.get("ReplyText", ""))


def parse_search(body: bytes) -> SearchResult:
    reply = reply_of(body)
    count_match = _COUNT.search(body)
    count = int(count_match.group(1)) if count_match else None
    max_rows = _MAXROWS.search(body) is not None
    columns_match = _COLUMNS.search(body)
    if columns_match is None:
        return SearchResult(reply, count=count, max_rows=max_rows)
    delimiter_match = _DELIMITER.search(body)
    delimiter = chr(int(delimiter_match.group(1), 16)) if delimiter_match else "\t"
    columns = _split(_text(columns_match.group(1)), delimiter)
    if columns is None or not all(columns):
        raise ReplyUnreadable("the COLUMNS line cannot be read")
    rows: list[dict[str, str] | BadRow] = []
    for data in _DATA.finditer(body):
        raw = _text(data.group(1))
        values = _split(raw, delimiter)
        if values is None:
            rows.append(BadRow(raw, "a DATA row that does not start and end with the delimiter"))
        elif len(values) != len(columns):
            rows.append(BadRow(raw, f"a DATA row of {len(values)} values for {len(columns)} "
                                    "columns"))  # fmt: skip
        else:
            rows.append(dict(zip(columns, values, strict=True)))
    return SearchResult(reply, columns, rows, count, max_rows)


def parse_metadata(body: bytes) -> tuple[Reply, list[MetadataBlock]]:
    reply = reply_of(body)
    blocks: list[MetadataBlock] = []
    for match in _BLOCK.finditer(body):
        inner = match.group(3)
        columns_match = _COLUMNS.search(inner)
        columns = _split(_text(columns_match.group(1)), "\t") if columns_match else None
        rows: list[dict[str, str]] = []
        for data in _DATA.finditer(inner):
            values = _split(_text(data.group(1)), "\t")
            if columns and values is not None and len(values) == len(columns):
                rows.append(dict(zip(columns, values, strict=True)))
        attributes = _attributes(match.group(2).decode("utf-8", "replace"))
        blocks.append(MetadataBlock(match.group(1).decode(), attributes, rows))
    return reply, blocks


@dataclass(frozen=True)
class ObjectPart:
    headers: dict[str, str]  # lower-cased names
    content: bytes


def parse_multipart(body: bytes, content_type: str) -> list[ObjectPart]:
    """The parts of a ``multipart/related`` GetObject answer."""
    boundary = _boundary(content_type)
    if boundary is None:
        raise ReplyUnreadable("a multipart answer without a boundary")
    parts: list[ObjectPart] = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        head, separator, content = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        if not separator:
            raise ReplyUnreadable("a multipart part without headers")
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        parts.append(ObjectPart(headers, content.removesuffix(b"\r\n")))
    return parts


def _boundary(content_type: str) -> bytes | None:
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "boundary" and value:
            return value.strip('"').encode("latin-1")
    return None


def _attributes(text: str) -> dict[str, str]:
    return {m.group(1): html.unescape(m.group(2)[1:-1]) for m in _ATTRIBUTE.finditer(text)}


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _split(line: str, delimiter: str) -> list[str] | None:
    """COMPACT values: the line starts and ends with the delimiter, one between each value.
    Split before unescaping, so an escaped delimiter inside a value stays in it."""
    if len(line) < 2 or not (line.startswith(delimiter) and line.endswith(delimiter)):
        return None
    return [html.unescape(value) for value in line[1:-1].split(delimiter)]
