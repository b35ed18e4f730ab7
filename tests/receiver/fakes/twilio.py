"""A Twilio stand-in for ``Messages.json`` and ``Calls.json`` (REST API 2010-04-01).

Checks basic auth (``AccountSid:AuthToken``; 401 code 20003 otherwise), the form content type,
the required parameters (``To``; ``From`` or ``MessagingServiceSid``; ``Body`` for Messages,
``Twiml`` or ``Url`` for Calls), E.164 numbers (400 code 21211) and the 1600-character Body
limit (400 code 21617). Success is 201 with the new resource (``sid`` SM.../CA...).

``answer_next(kind)`` kinds: ``ok``, ``rate_limited`` (429 code 20429; option ``retry_after``,
omitted when None), ``server_error`` (500 code 20500; option ``status``), ``error`` (options
``status`` default 400 and ``code`` default 21211), ``error_on_200`` (HTTP 200 with an error
body and no sid).
"""

import asyncio
import base64
import binascii
import itertools
import json
import re
from typing import Any

from aiohttp import web

from ._base import FakeServer

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "fake-twilio-auth-token-0001"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
MESSAGES = {
    20003: "Authenticate",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    21211: "The 'To' number {to} is not a valid phone number.",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21602: "Message body is required.",
    21603: "The source 'from' phone number is required to send an SMS.",
    21205: "Url parameter is required.",
    20404: "The requested resource was not found",
}


class FakeTwilio(FakeServer):
    """Twilio's Messages and Calls resources for one account."""

    def __init__(self, *, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._n = itertools.count(1)

    @property
    def api_url(self) -> str:
        """The channel's ``api_url``."""
        return self.base_url

    def routes(self, app: web.Application) -> None:
        """Both resources."""
        app.router.add_post("/2010-04-01/Accounts/{sid}/{resource}", self._create)

    async def _create(self, request: web.Request) -> web.Response:
        recorded = await self.record(request)
        self.requests.append(recorded)
        resource = request.match_info["resource"]
        if resource not in ("Messages.json", "Calls.json"):
            recorded.problem = f"unknown resource {resource}"
            return _error(404, 20404)
        if _basic_auth(request.headers.get("Authorization", "")) != (
            self.account_sid,
            self.auth_token,
        ) or (request.match_info["sid"] != self.account_sid):
            recorded.problem = "authentication"
            return _error(401, 20003)
        if request.content_type != "application/x-www-form-urlencoded":
            recorded.problem = f"content type {request.content_type}"
            return _error(400, 21602)
        form = recorded.form
        to = form.get("To", "")
        if not E164.match(to):
            recorded.problem = "To is not E.164"
            return _error(400, 21211, to=to)
        if not (form.get("From") or form.get("MessagingServiceSid")):
            recorded.problem = "no From"
            return _error(400, 21603)
        if resource == "Messages.json":
            if not form.get("Body"):
                recorded.problem = "no Body"
                return _error(400, 21602)
            if len(form["Body"]) > 1600:
                recorded.problem = "Body longer than 1600"
                return _error(400, 21617)
        elif not (form.get("Twiml") or form.get("Url")):
            recorded.problem = "no Twiml or Url"
            return _error(400, 21205)
        kind, options = self._next_answer()
        if kind == "hang":
            # Answer late (option ``seconds``, default 1), then succeed: a client timeout.
            await asyncio.sleep(options.get("seconds", 1.0))
            kind = "ok"
        if kind == "ok":
            prefix = "SM" if resource == "Messages.json" else "CA"
            sid = f"{prefix}{next(self._n):032x}"
            body: dict[str, Any] = {
                "sid": sid,
                "account_sid": self.account_sid,
                "to": to,
                "from": form.get("From"),
                "status": "queued",
            }
            if resource == "Messages.json":
                body["body"] = form["Body"]
                body["num_segments"] = "1"
            return web.Response(status=201, text=json.dumps(body), content_type="application/json")
        if kind == "rate_limited":
            headers = {}
            if options.get("retry_after", 3) is not None:
                headers["Retry-After"] = str(options.get("retry_after", 3))
            return _error(429, 20429, headers=headers)
        if kind == "server_error":
            return _error(options.get("status", 500), 20500)
        if kind == "error":
            return _error(options.get("status", 400), options.get("code", 21211), to=to)
        if kind == "error_on_200":
            return _error(200, options.get("code", 20500))
        raise ValueError(f"unknown answer {kind!r}")


def _error(
    status: int, code: int, *, to: str = "", headers: dict[str, str] | None = None
) -> web.Response:
    # Twilio's message quotes the number: the channel must keep it out of its detail.
    body = {
        "code": code,
        "message": MESSAGES.get(code, "Error").format(to=to),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers
    )


def _basic_auth(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        login, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (login, password) if sep else None
