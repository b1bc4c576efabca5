"""Reading RETS replies: envelopes, COMPACT rows (malformed ones included), metadata, multipart."""

from __future__ import annotations

import pytest

from cadastre.connectors.mls.rets.compact import (
    BadRow,
    ReplyUnreadable,
    is_reply,
    parse_metadata,
    parse_multipart,
    parse_search,
    reply_of,
)


def body(inner: str, code: int = 0, text: str = "Operation Successful") -> bytes:
    head = f'<?xml version="1.0"?>\n<RETS ReplyCode="{code}" ReplyText="{text}">\n'
    return f"{head}{inner}</RETS>\n".encode()


def test_the_envelope_gives_the_reply_code_and_text() -> None:
    reply = reply_of(body("", 20201, "No Records Found"))
    assert (reply.code, reply.text) == (20201, "No Records Found")
    assert reply_of(b'<RETS ReplyCode="20701" ReplyText="Not logged in"/>').code == 20701


@pytest.mark.parametrize(
    "answer",
    [b"<html><body>502 Bad Gateway</body></html>", b"", b'<RETS ReplyCode="x" ReplyText=""/>'],
)
def test_an_answer_that_is_no_rets_reply_is_unreadable(answer: bytes) -> None:
    with pytest.raises(ReplyUnreadable):
        parse_search(answer)


def test_compact_rows_become_dicts_with_escapes_and_empty_values_kept() -> None:
    result = parse_search(body(
        '<COUNT Records="2" />\n<DELIMITER value="09" />\n'
        "<COLUMNS>\tListingID\tRemarks\tBeds\t</COLUMNS>\n"
        "<DATA>\tL1\tTom &amp; Jerry &lt;3\t3\t</DATA>\n"
        "<DATA>\tL2\t\t\t</DATA>\n"
    ))  # fmt: skip
    assert result.reply.code == 0
    assert result.count == 2
    assert not result.truncated
    assert result.rows == [
        {"ListingID": "L1", "Remarks": "Tom & Jerry <3", "Beds": "3"},
        {"ListingID": "L2", "Remarks": "", "Beds": ""},
    ]


def test_an_escaped_delimiter_stays_inside_its_value() -> None:
    result = parse_search(body(
        '<DELIMITER value="09"/><COLUMNS>\tA\tB\t</COLUMNS>\n<DATA>\tx&#9;y\tz\t</DATA>\n'
    ))  # fmt: skip
    assert result.rows == [{"A": "x\ty", "B": "z"}]


def test_a_row_with_the_wrong_number_of_columns_is_a_bad_row_not_a_crash() -> None:
    result = parse_search(body(
        "<COLUMNS>\tListingID\tListPrice\t</COLUMNS>\n"
        "<DATA>\tL1\t100\t</DATA>\n"
        "<DATA>\tL2\t200\textra\t</DATA>\n"
        "<DATA>\tL3\t</DATA>\n"
        "<DATA>L4\t300</DATA>\n"
        "<DATA>\tL5\t500\t</DATA>\n"
    ))  # fmt: skip
    good = [row for row in result.rows if isinstance(row, dict)]
    bad = [row for row in result.rows if isinstance(row, BadRow)]
    assert [row["ListingID"] for row in good] == ["L1", "L5"]
    assert [b.reason for b in bad][:2] == [
        "a DATA row of 3 values for 2 columns",
        "a DATA row of 1 values for 2 columns",
    ]
    assert "delimiter" in bad[2].reason
    assert bad[2].text == "L4\t300"


def test_another_delimiter_and_maxrows() -> None:
    result = parse_search(body(
        '<COUNT Records="9"/><DELIMITER value="7C"/>\n<COLUMNS>|A|B|</COLUMNS>\n'
        "<DATA>|1|2|</DATA>\n<MAXROWS/>\n"
    ))  # fmt: skip
    assert result.rows == [{"A": "1", "B": "2"}]
    assert result.max_rows
    assert result.truncated


def test_a_count_above_the_rows_returned_is_truncated_even_without_maxrows() -> None:
    result = parse_search(body('<COUNT Records="3"/><COLUMNS>\tA\t</COLUMNS><DATA>\t1\t</DATA>'))
    assert result.truncated


def test_count_only_and_no_records_have_no_columns() -> None:
    counted = parse_search(body('<COUNT Records="12" />\n'))
    assert counted.count == 12
    assert counted.columns == []
    assert counted.rows == []
    nothing = parse_search(body("", 20201, "No Records Found"))
    assert nothing.reply.code == 20201
    assert nothing.rows == []


def test_unreadable_columns_are_an_unreadable_reply() -> None:
    with pytest.raises(ReplyUnreadable):
        parse_search(body("<COLUMNS>ListingID</COLUMNS>"))


def test_metadata_blocks_with_their_attributes_and_rows() -> None:
    reply, blocks = parse_metadata(body(
        '<METADATA-LOOKUP_TYPE Resource="Property" Lookup="ListingStatus" Version="1">\n'
        "<COLUMNS>\tLongValue\tShortValue\tValue\t</COLUMNS>\n"
        "<DATA>\tActive\tA\tA\t</DATA>\n<DATA>\tbroken\t</DATA>\n"
        "</METADATA-LOOKUP_TYPE>\n"
    ))  # fmt: skip
    assert reply.code == 0
    assert len(blocks) == 1
    assert blocks[0].attributes["Lookup"] == "ListingStatus"
    assert blocks[0].rows == [{"LongValue": "Active", "ShortValue": "A", "Value": "A"}]


def test_multipart_parts_keep_their_headers_and_bytes() -> None:
    raw = (
        b"--b1\r\nContent-ID: L1\r\nObject-ID: 1\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8one\r\n"
        b"--b1\r\nContent-ID: L1\r\nObject-ID: 2\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8two\r\n"
        b"--b1--\r\n"
    )
    parts = parse_multipart(raw, 'multipart/related; boundary="b1"; type="image/jpeg"')
    assert [(p.headers["object-id"], p.content) for p in parts] == [
        ("1", b"\xff\xd8one"),
        ("2", b"\xff\xd8two"),
    ]
    with pytest.raises(ReplyUnreadable):
        parse_multipart(raw, "multipart/related")


def test_a_reply_is_told_by_its_first_bytes_whatever_its_content_type() -> None:
    assert is_reply(body("", 20701, "Not Logged In"))
    assert is_reply(b'\xef\xbb\xbf  \r\n<?xml version="1.0"?>\n<!-- hi -->\n<RETS ReplyCode="0"/>')
    assert is_reply(b"<RETS\n ReplyCode='20701' ReplyText='Not logged in'>")
    assert not is_reply(b'\xff\xd8\xff\xe0<RETS ReplyCode="0"/>')  # a photo that says it
    assert not is_reply(b'--boundary\r\nContent-ID: L1\r\n\r\n<RETS ReplyCode="0"/>')
    assert not is_reply(b"<RETS-RESPONSE>")
    assert not is_reply(b"<html><body>502</body></html>")
    assert not is_reply(b"")
