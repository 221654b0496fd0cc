"""Item bodies in and out: JSON by default, XML through a hardened lxml parser, bytes otherwise.

Every decode failure becomes a :class:`DecodeError`, because the processor dead-letters those at
once: a body that did not parse will not parse on the next attempt either.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from statusq.defaults import BYTES_TYPE, JSON_TYPE, XML_TYPE
from statusq.errors import DataError, DecodeError

if TYPE_CHECKING:
    from lxml import etree

# lxml is imported on first use (each such import has a noqa for PLC0415): 4 MB a worker that
# never sees XML need not carry.

_XML_TYPES = frozenset({XML_TYPE, "text/xml", "application/atom+xml"})


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def is_xml(content_type: str) -> bool:
    media = _media_type(content_type)
    return media in _XML_TYPES or media.endswith("+xml")


def is_json(content_type: str) -> bool:
    media = _media_type(content_type)
    return media == JSON_TYPE or media.endswith("+json")


def _parser() -> etree.XMLParser:
    from lxml import etree  # noqa: PLC0415 -- lxml: on first use

    # A new parser per call: lxml parsers are not safe to share between threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
    )


def parse_xml(body: bytes) -> etree._Element:
    """Parse untrusted XML; refuse entity declarations outright (XXE, billion laughs)."""
    from lxml import etree  # noqa: PLC0415 -- lxml: on first use

    try:
        root = etree.fromstring(body, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise DecodeError(f"malformed XML: {exc}") from None
    dtd: Any = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise DecodeError("XML declares entities in its DTD; refused (XXE/entity-expansion guard)")
    return root


def decode(body: bytes, content_type: str) -> Any:
    """Turn a raw body into the payload a handler gets."""
    if content_type == JSON_TYPE or is_json(content_type):  # the first: every item statusq sends
        try:
            return json.loads(body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise DecodeError(f"JSON body is not UTF-8: {exc}") from None
        except json.JSONDecodeError as exc:
            raise DecodeError(f"malformed JSON: {exc}") from None
        except RecursionError:
            # Found by fuzzing: ``[[[[…`` a few thousand deep escaped as an internal error, and
            # the item was retried instead of dead-lettered as the bad item it is.
            raise DecodeError("JSON nested too deeply to decode") from None
    if is_xml(content_type):
        return parse_xml(body)
    return body


def _is_element(payload: Any) -> bool:
    etree_module = sys.modules.get("lxml.etree")  # no element can exist before lxml is loaded
    return etree_module is not None and isinstance(payload, etree_module._Element)


#: ``json.dumps(payload, ensure_ascii=False, ...)`` made a new encoder per call: 60% of a small
#: payload's encoding.  The encoder keeps no state between calls, so one serves every thread.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_json(payload: Any) -> bytes:
    """``payload`` as compact UTF-8 JSON; :class:`DataError` if it is not JSON-serializable."""
    try:
        text = _JSON.encode(payload)
    except (TypeError, ValueError) as exc:
        raise DataError(f"payload is not JSON-serializable: {exc}") from None
    except RecursionError:
        raise DataError("payload nested too deeply to encode as JSON") from None
    return text.encode("utf-8")


def encode(payload: Any, content_type: str | None = None) -> tuple[bytes, str]:
    """Serialize a payload for the wire; returns the body and the content type used.

    Bytes without a content type travel as octet-stream; an lxml element as XML; anything else
    as JSON.  XML given as text is parsed first, so a producer learns of a bad document at once
    rather than a worker later.
    """
    if content_type is None:
        if isinstance(payload, (bytes, bytearray)):
            content_type = BYTES_TYPE
        elif _is_element(payload):
            content_type = XML_TYPE
        else:
            content_type = JSON_TYPE
    if is_xml(content_type):
        if _is_element(payload):
            from lxml import etree  # noqa: PLC0415 -- lxml: on first use

            return etree.tostring(payload, encoding="utf-8"), content_type
        if isinstance(payload, str):
            raw = payload.encode("utf-8")
        elif isinstance(payload, (bytes, bytearray)):
            raw = bytes(payload)
        else:
            raise DataError(f"an XML payload must be an lxml element, str or bytes, not {type(payload).__name__}")
        try:
            parse_xml(raw)
        except DecodeError as exc:
            raise DataError(str(exc)) from None
        return raw, content_type
    if is_json(content_type):
        return encode_json(payload), content_type
    if isinstance(payload, str):
        return payload.encode("utf-8"), content_type
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload), content_type
    raise DataError(f"a {content_type} payload must be bytes or str, not {type(payload).__name__}")
