"""Client frames encoded by statusq rather than by stomp.py: the ones written in batches (ACKs,
the frames of a settlement transaction), where stomp.py's encoder, one call and one listener
round per frame, cost more than the item.  Byte for byte what stomp.py's Protocol12 sends
(``tests/unit/test_stomp_logic.py`` checks it against stomp.py's own encoder)."""

from __future__ import annotations


def ack_frame(ack_id: str) -> bytes:
    """An ACK frame as ``conn.ack(ack_id)`` sends it, STOMP 1.2 escapes included (in the order
    stomp.py's Protocol12 applies them); encoded here because acks are written in batches, one
    system call for many, and stomp.py's frame encoder cost more than the item."""
    escaped = ack_id.replace("\\", "\\\\").replace("\n", "\\n").replace(":", "\\c").replace("\r", "\\r")
    return b"ACK\nid:" + escaped.encode() + b"\n\n\x00"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace(":", "\\c").replace("\r", "\\r")


def _lines(headers: dict[str, str]) -> str:
    """``headers`` as header lines, each ending in a newline.  Nearly every value holds no
    character to escape: checked once on all of them together, then the lines are joined in C
    (escaping each value, four ``replace`` calls, was a third of encoding a batch's SEND)."""
    try:
        values = "".join(headers.values())
        if "\\" not in values and "\n" not in values and ":" not in values and "\r" not in values:
            return "\n".join(map(":".join, headers.items())) + "\n" if headers else ""
    except TypeError:  # a value (or key) that is not a str: as stomp.py does, str() of it
        pass
    return "".join([f"{k}:{_escape(str(v))}\n" for k, v in headers.items()])


def encode_frame(command: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """A client frame as stomp.py's Protocol12 sends it: header values escaped (keys as they
    are), a content-length with a body.  The frames of a settlement transaction are encoded here
    and written in one system call, as batched ACKs are; through stomp.py it was one call and
    one listener round per frame, two frames per retried item."""
    if body:
        if "content-length" in headers:
            headers = {**headers, "content-length": str(len(body))}
        else:
            text = f"{command}\n{_lines(headers)}content-length:{len(body)}\n\n"
            return text.encode() + body + b"\x00"
    return f"{command}\n{_lines(headers)}\n".encode() + body + b"\x00"
