"""Bearer and basic auth, compared in constant time."""

import base64
import binascii
import hmac

from aiohttp import web

from voicedrive_common.secrets import Secret
from voicedrive_receiver.config import Auth, BasicAuth, BearerAuth


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def authorized(request: web.Request, auth: Auth | None, secret: Secret | None) -> bool:
    """Whether the request carries the configured credentials (no auth configured: yes)."""
    if auth is None:
        return True
    if secret is None:
        return False
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if isinstance(auth, BearerAuth):
        return scheme.lower() == "bearer" and _same(value.strip(), secret.reveal())
    assert isinstance(auth, BasicAuth)
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, sep, password = decoded.partition(":")
    # Both comparisons run every time, so timing says nothing about which part was wrong.
    user_ok = _same(user, auth.username)
    password_ok = _same(password, secret.reveal())
    return bool(sep) and user_ok and password_ok


def challenge(auth: Auth | None) -> dict[str, str]:
    """The WWW-Authenticate header for a 401."""
    if isinstance(auth, BasicAuth):
        return {"WWW-Authenticate": 'Basic realm="voicedrive-receiver"'}
    return {"WWW-Authenticate": 'Bearer realm="voicedrive-receiver"'}
