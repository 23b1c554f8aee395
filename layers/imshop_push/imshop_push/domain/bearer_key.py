"""An API key as it may go into an `Authorization: Bearer` header: checked where it is read (the wiring) and
again where it is used (the IMSHOP client), with one rule and one error for both."""

from __future__ import annotations


class ConfigError(ValueError):
    """A variable is missing or malformed; the message names it."""


def bearer_key(key: str, *, source: str) -> str:
    """The key as it can go into `Authorization: Bearer <key>`: surrounding whitespace dropped, then only visible
    ASCII (a Bearer token's alphabet). Anything else is refused here, as a configuration error that names where
    the key came from and never the key: sent as is, a newline makes http.client raise with the whole header
    in its message (and so in Lambda's log), and a control character would be refused by the vendor every call.
    """
    stripped = key.strip()
    if not stripped:
        raise ConfigError(f"{source} is empty")
    if not all("!" <= c <= "~" for c in stripped):
        raise ConfigError(
            f"{source} is not a usable API key: it holds a space, a control or a non-ASCII character between its"
            " first and last character (the key is not shown)"
        )
    return stripped
