"""statusq.codec: item bodies in and out; every decode failure is a DecodeError, XML is hardened."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from statusq import codec
from statusq.defaults import BYTES_TYPE, JSON_TYPE, XML_TYPE
from statusq.errors import DataError, DecodeError

SECRET = "SECRET-MARKER-4f1c"


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    """A local file an attacker's entity would like to read; its content must never surface."""
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    return path


# --- JSON -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload", [{"n": 1, "text": "héllo wörld ✓ 日本"}, [1, 2.5, None, True], "just text", 42, None]
)
def test_json_round_trip(payload: Any) -> None:
    body, content_type = codec.encode(payload)

    assert content_type == JSON_TYPE
    assert codec.decode(body, content_type) == payload


def test_json_is_compact_utf8_not_ascii_escaped() -> None:
    body, _ = codec.encode({"a": "é"})

    assert body == '{"a":"é"}'.encode()


def test_json_media_type_parameters_and_suffixes_are_understood() -> None:
    assert codec.decode(b'{"a":1}', "application/json; charset=utf-8") == {"a": 1}
    assert codec.decode(b"[1]", "application/vnd.example+json") == [1]
    assert codec.is_json("Application/JSON")
    assert not codec.is_json("text/plain")


@pytest.mark.parametrize("body", [b"{", b"", b"{'single': 1}", b"[1,]", b"NaNx"])
def test_malformed_json_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError, match="malformed JSON"):
        codec.decode(body, JSON_TYPE)


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 50_000])
def test_json_nested_past_the_recursion_limit_is_a_decode_error(body: bytes) -> None:
    # Found by fuzzing (tests/fuzz): it escaped as a RecursionError, and the processor retried
    # the item as an internal error instead of dead-lettering a bad item at once.
    with pytest.raises(DecodeError, match="nested too deeply"):
        codec.decode(body, JSON_TYPE)


def test_a_payload_nested_past_the_recursion_limit_is_a_data_error() -> None:
    payload: list[Any] = []
    for _ in range(100_000):
        payload = [payload]
    with pytest.raises(DataError, match="nested too deeply"):
        codec.encode(payload)


def test_non_utf8_json_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="not UTF-8"):
        codec.decode('{"a": "é"}'.encode("latin-1"), JSON_TYPE)


@pytest.mark.parametrize("payload", [object(), {1, 2}, {"when": b"bytes"}])
def test_non_serializable_payload_is_a_data_error(payload: Any) -> None:
    with pytest.raises(DataError, match="not JSON-serializable"):
        codec.encode(payload)


@pytest.mark.parametrize("payload", [float("nan"), {"x": float("inf")}, [float("-inf")]])
def test_nan_and_infinity_are_refused(payload: Any) -> None:
    # json.dumps would write NaN, which no other JSON parser reads back.
    with pytest.raises(DataError):
        codec.encode(payload)


def test_decode_error_is_a_data_error() -> None:
    assert issubclass(DecodeError, DataError)


# --- bytes and other types --------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"\x00\x01\xff", bytearray(b"raw")])
def test_bytes_travel_as_octet_stream(payload: bytes | bytearray) -> None:
    body, content_type = codec.encode(payload)

    assert content_type == BYTES_TYPE
    assert body == bytes(payload)
    assert codec.decode(body, content_type) == bytes(payload)


def test_text_with_a_custom_type_is_encoded_utf8() -> None:
    assert codec.encode("héllo", "text/plain") == ("héllo".encode(), "text/plain")


def test_unknown_type_needs_bytes_or_text() -> None:
    with pytest.raises(DataError, match="must be bytes or str, not int"):
        codec.encode(5, "text/plain")


# --- XML --------------------------------------------------------------------------------------


def test_xml_element_round_trip() -> None:
    root = etree.fromstring("<entry><title>héllo ✓</title><n a='1'/></entry>")

    body, content_type = codec.encode(root)
    decoded = codec.decode(body, content_type)

    assert content_type == XML_TYPE
    assert isinstance(decoded, etree._Element)
    assert etree.tostring(decoded) == etree.tostring(root)
    assert decoded.findtext("title") == "héllo ✓"


@pytest.mark.parametrize("content_type", ["text/xml", "application/atom+xml", "Application/XML; charset=utf-8"])
def test_xml_media_types(content_type: str) -> None:
    assert codec.is_xml(content_type)
    assert codec.decode(b"<r/>", content_type).tag == "r"


def test_xml_text_is_checked_and_sent_unchanged() -> None:
    text = "<r><a>1</a></r>"

    assert codec.encode(text, XML_TYPE) == (text.encode(), XML_TYPE)


@pytest.mark.parametrize("body", [b"<r>", b"", b"not xml", b"<a></b>"])
def test_malformed_xml_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError, match="malformed XML"):
        codec.decode(body, XML_TYPE)


def test_xxe_body_is_refused_and_the_file_never_read(secret_file: Path) -> None:
    body = (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret_file}">]><r>&x;</r>').encode()

    with pytest.raises(DecodeError, match="entities") as caught:
        codec.decode(body, XML_TYPE)

    assert SECRET not in str(caught.value)


def test_xxe_against_etc_passwd_is_refused() -> None:
    body = b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'

    with pytest.raises(DecodeError) as caught:
        codec.decode(body, XML_TYPE)

    assert "root:" not in str(caught.value)


def test_parameter_entity_is_refused(secret_file: Path) -> None:
    body = f'<!DOCTYPE r [<!ENTITY % p SYSTEM "file://{secret_file}"> %p;]><r>x</r>'.encode()

    with pytest.raises(DecodeError) as caught:
        codec.decode(body, XML_TYPE)

    assert SECRET not in str(caught.value)


def test_billion_laughs_is_refused() -> None:
    lols = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' if i else '<!ENTITY lol0 "lol">' for i in range(10))
    body = f'<?xml version="1.0"?><!DOCTYPE lolz [{lols}]><lolz>&lol9;</lolz>'.encode()

    # libxml2's amplification guard or our entity guard, whichever fires first: a DecodeError.
    with pytest.raises(DecodeError):
        codec.decode(body, XML_TYPE)


def test_small_entity_expansion_is_refused_too() -> None:
    body = b'<!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><r>&b;</r>'

    with pytest.raises(DecodeError, match="entities"):
        codec.decode(body, XML_TYPE)


def test_external_dtd_is_not_loaded(secret_file: Path) -> None:
    body = f'<!DOCTYPE r SYSTEM "file://{secret_file}"><r>x</r>'.encode()

    root = codec.decode(body, XML_TYPE)

    assert SECRET not in etree.tostring(root.getroottree()).decode()


def test_xinclude_is_not_processed(secret_file: Path) -> None:
    body = (
        f'<r xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="{secret_file}" parse="text"/></r>'
    ).encode()

    root = codec.decode(body, XML_TYPE)

    assert SECRET not in etree.tostring(root).decode()


def test_doctype_without_entities_is_accepted() -> None:
    body = b"<!DOCTYPE r [<!ELEMENT r (#PCDATA)>]><r>fine</r>"

    assert codec.decode(body, XML_TYPE).text == "fine"


@pytest.mark.parametrize(
    "text",
    ["<r>", "<a></b>", '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'],
)
def test_encoding_invalid_xml_text_is_a_data_error_at_once(text: str) -> None:
    with pytest.raises(DataError) as caught:
        codec.encode(text, XML_TYPE)

    assert not isinstance(caught.value, DecodeError)  # a producer's mistake, not a worker's


@pytest.mark.parametrize("payload", [{"a": 1}, None])
def test_encoding_a_non_text_payload_as_xml_is_a_data_error(payload: Any) -> None:
    with pytest.raises(DataError):
        codec.encode(payload, XML_TYPE)
