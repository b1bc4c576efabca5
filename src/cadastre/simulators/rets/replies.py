"""RETS reply bodies: the ``<RETS ReplyCode=... ReplyText=...>`` envelope, COMPACT search results
and COMPACT metadata, and multipart GetObject answers.

RETS answers errors with HTTP 200 and a reply code in the body (RETS 1.7.2 section 3.10); only
authentication failures use HTTP 401. The codes used here:

| code | transaction | text |
|---|---|---|
| 0 | all | Operation Successful |
| 20200 | Search | Unknown Query Field |
| 20201 | Search | No Records Found |
| 20203 | Search | Miscellaneous Search Error |
| 20206 | Search | Invalid Query Syntax |
| 20403 | GetObject | No Object Found |
| 20503 | GetMetadata | No Metadata Found |
| 20701 | Search, GetObject, GetMetadata, Logout | Not Logged In |
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

from starlette.responses import Response

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

RETS_VERSION = "RETS/1.7.2"
HEADERS = {"RETS-Version": RETS_VERSION, "Cache-Control": "private"}
TAB = "\t"

SUCCESS = 0
UNKNOWN_QUERY_FIELD = 20200
NO_RECORDS_FOUND = 20201
MISC_SEARCH_ERROR = 20203
INVALID_QUERY_SYNTAX = 20206
NO_OBJECT_FOUND = 20403
NO_METADATA_FOUND = 20503
NOT_LOGGED_IN = 20701

TEXTS = {
    SUCCESS: "Operation Successful",
    UNKNOWN_QUERY_FIELD: "Unknown Query Field",
    NO_RECORDS_FOUND: "No Records Found",
    MISC_SEARCH_ERROR: "Miscellaneous Search Error",
    INVALID_QUERY_SYNTAX: "Invalid Query Syntax",
    NO_OBJECT_FOUND: "No Object Found",
    NO_METADATA_FOUND: "No Metadata Found",
    NOT_LOGGED_IN: "Not Logged In",
}


def envelope(code: int, inner: str = "", text: str | None = None) -> str:
    said = TEXTS.get(code, "Error") if text is None else text
    return (
        f'<?xml version="1.0" ?>\n<RETS ReplyCode="{code}" ReplyText={quoteattr(said)}>\n'
        f"{inner}</RETS>\n"
    )


def xml(body: str, headers: dict[str, str] | None = None) -> Response:
    return Response(body, media_type="text/xml", headers={**HEADERS, **(headers or {})})


def reply(code: int, text: str | None = None) -> Response:
    return xml(envelope(code, text=text))


def compact_row(values: Iterable[str]) -> str:
    """A COMPACT line body: tab-separated, with a tab before the first value and after the last."""
    return TAB + TAB.join(escape(v) for v in values) + TAB


def compact(
    columns: Sequence[str], rows: Iterable[Sequence[str]], *, count: int | None,
    max_rows: bool, include_data: bool = True,
) -> str:  # fmt: skip
    parts: list[str] = []
    if count is not None:
        parts.append(f'<COUNT Records="{count}" />\n')
    if include_data:
        parts.append('<DELIMITER value="09" />\n')
        parts.append(f"<COLUMNS>{compact_row(columns)}</COLUMNS>\n")
        parts.extend(f"<DATA>{compact_row(row)}</DATA>\n" for row in rows)
    if max_rows:
        parts.append("<MAXROWS />\n")
    return envelope(SUCCESS, "".join(parts))


def metadata_block(tag: str, attributes: dict[str, str], columns: Sequence[str],
                   rows: Iterable[Sequence[str]]) -> str:  # fmt: skip
    attrs = " ".join(f"{k}={quoteattr(v)}" for k, v in attributes.items())
    body = "".join(f"<DATA>{compact_row(row)}</DATA>\n" for row in rows)
    return f"<{tag} {attrs}>\n<COLUMNS>{compact_row(columns)}</COLUMNS>\n{body}</{tag}>\n"


def multipart(parts: Sequence[tuple[dict[str, str], bytes]], boundary: str) -> Response:
    chunks: list[bytes] = []
    for headers, content in parts:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        chunks.append(f"--{boundary}\r\n{head}\r\n".encode() + content + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    media = f'multipart/related; boundary="{boundary}"; type="image/jpeg"'
    return Response(b"".join(chunks), headers={**HEADERS, "Content-Type": media})
