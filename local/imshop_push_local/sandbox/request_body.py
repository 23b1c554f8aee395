"""Reading a request's body as the vendor's server (hapi) does: framed by Content-Length or chunked
encoding, capped at 1 MiB, parsed as JSON only when the Content-Type says JSON or says nothing.

Kept apart from the handler (``server``) because framing decides whether the connection can be reused,
and its errors are answered only after the path, key and rate window have been judged.
"""

from __future__ import annotations

import json
from email.message import Message
from io import BufferedIOBase
from typing import Any, Final

# hapi's default payload limit: a body this large is a client bug, not a push.
MAX_BODY_BYTES: Final = 1024 * 1024


class BodyError(Exception):
    """The body could not be framed; the connection cannot be reused after it."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.payload = {"error": error, "message": message}


def read_body(headers: Message, rfile: BufferedIOBase) -> bytes:
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        return _read_chunked(rfile)
    length_header = headers.get("Content-Length")
    if length_header is None:
        return b""
    try:
        length = int(length_header)
    except ValueError:
        raise BodyError(400, "Bad Request", "Invalid Content-Length") from None
    if length < 0:
        raise BodyError(400, "Bad Request", "Invalid Content-Length")
    if length > MAX_BODY_BYTES:
        raise _too_large()
    data = rfile.read(length)
    if len(data) != length:
        raise BodyError(400, "Bad Request", "Incomplete request body")
    return data


def _read_chunked(rfile: BufferedIOBase) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        line = rfile.readline(1024)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BodyError(400, "Bad Request", "Invalid chunked encoding") from None
        if size == 0:
            while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailers carry nothing the API reads
            return b"".join(chunks)
        total += size
        if total > MAX_BODY_BYTES:
            raise _too_large()
        chunk = rfile.read(size)
        if len(chunk) != size:
            raise BodyError(400, "Bad Request", "Incomplete request body")
        chunks.append(chunk)
        rfile.readline(1024)


def _too_large() -> BodyError:
    message = f"Payload content length greater than maximum allowed: {MAX_BODY_BYTES}"
    return BodyError(413, "Request Entity Too Large", message)


def is_json_content(headers: Message) -> bool:
    # hapi treats a missing Content-Type as JSON and refuses form posts with 415.
    content_type = headers.get("Content-Type")
    if content_type is None:
        return True
    parsed = Message()
    parsed["Content-Type"] = content_type
    return parsed.get_content_type() == "application/json"


def parse_json(raw: bytes | None) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None
