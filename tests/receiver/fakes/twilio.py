"""A Twilio stand-in for ``Messages.json`` and ``Calls.json`` (REST API 2010-04-01).

Checks basic auth (``AccountSid:AuthToken``; 401 code 20003 otherwise), the form content type,
the required parameters (``To``; ``From`` or ``MessagingServiceSid``; ``Body`` for Messages,
``Twiml`` or ``Url`` for Calls), E.164 numbers (400 code 21211) and the 1600-character Body
limit (400 code 21617). Success is 201 with the new resource (``sid`` SM.../CA...).

``answer_next(kind)`` kinds: ``ok``, ``rate_limited`` (429 code 20429; option ``retry_after``,
omitted when None), ``server_error`` (500 code 20500; option ``status``), ``error`` (options
``status`` default 400 and ``code`` default 21211), ``error_on_200`` (HTTP 200 with an error
body and no sid), ``hang`` (create at once, answer after option ``seconds``, default 1).

Every Message created is kept (``messages``, oldest first; ``date_created`` from ``now``,
time.time by default; status ``sent`` at once, so ``date_sent`` equals ``date_created``) and
``created_bodies`` counts them by ``(To, Body)``. ``GET .../Messages.json`` lists them as Twilio
does: filters ``To``, ``From``, ``DateSent`` / ``DateSent<`` / ``DateSent>`` (a ``YYYY-MM-DD``
day, or ``YYYY-MM-DDTHH:MM:SSZ`` whose day is used; the ``>``/``<`` forms are on-or-after /
on-or-before, as the query key ``DateSent>`` that ``DateSent>=day`` becomes), ``PageSize``
(1-1000, default 50), ``Page`` with ``PageToken``; newest first; ``{"messages", "page",
"page_size", "start", "end", "uri", "first_page_uri", "next_page_uri", "previous_page_uri"}``
with URIs relative to the host and ``next_page_uri`` null on the last page. Unknown or
malformed filters answer 400 (code 20001 in this fake). ``answer_list_next(kind)``: ``ok``,
``rate_limited``, ``server_error``.
"""

import asyncio
import base64
import binascii
import itertools
import json
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

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
    20001: "Invalid parameter",
}
LIST_PARAMS = frozenset(
    {"To", "From", "DateSent", "DateSent<", "DateSent>", "PageSize", "Page", "PageToken"}
)
DAY = re.compile(r"^(\d{4}-\d{2}-\d{2})(T\d{2}:\d{2}:\d{2}Z)?$")


class FakeTwilio(FakeServer):
    """Twilio's Messages and Calls resources for one account."""

    def __init__(
        self,
        *,
        account_sid: str = ACCOUNT_SID,
        auth_token: str = AUTH_TOKEN,
        now: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.now = now
        self._n = itertools.count(1)
        self.messages: list[dict[str, Any]] = []
        self.created_bodies: Counter[tuple[str, str]] = Counter()
        self._list_script: deque[tuple[str, dict[str, Any]]] = deque()

    def answer_list_next(self, kind: str, *, times: int = 1, **options: Any) -> None:
        """Answer the next ``times`` well-formed Messages list calls with ``kind``."""
        for _ in range(times):
            self._list_script.append((kind, options))

    def add_message(
        self,
        *,
        to: str,
        body: str,
        created: float,
        from_: str | None = "+815012345678",
        status: str = "sent",
        messaging_service_sid: str | None = None,
        direction: str = "outbound-api",
    ) -> dict[str, Any]:
        """Put a Message into the account's log directly (as another sender would)."""
        sid = f"SM{next(self._n):032x}"
        stamp = format_datetime(datetime.fromtimestamp(created, UTC), usegmt=False)
        message = {
            "sid": sid,
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "to": to,
            "from": from_,
            "messaging_service_sid": messaging_service_sid,
            "body": body,
            "status": status,
            "direction": direction,
            "num_segments": "1",
            "num_media": "0",
            "date_created": stamp,
            "date_updated": stamp,
            "date_sent": stamp if status not in ("queued", "accepted", "scheduled") else None,
            "error_code": None,
            "error_message": None,
            "price": None,
            "price_unit": "USD",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            "_created": created,
        }
        self.messages.append(message)
        self.changed.set()
        return message

    @property
    def api_url(self) -> str:
        """The channel's ``api_url``."""
        return self.base_url

    def routes(self, app: web.Application) -> None:
        """Both resources."""
        app.router.add_post("/2010-04-01/Accounts/{sid}/{resource}", self._create)
        app.router.add_get("/2010-04-01/Accounts/{sid}/Messages.json", self._list)

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
        if kind in ("ok", "hang"):
            if resource == "Messages.json":
                stored = self.add_message(
                    to=to,
                    body=form["Body"],
                    created=self.now(),
                    from_=form.get("From"),
                    messaging_service_sid=form.get("MessagingServiceSid"),
                )
                self.created_bodies[(to, form["Body"])] += 1
                body = _public(stored) | {"status": "queued", "date_sent": None}
            else:
                body = {
                    "sid": f"CA{next(self._n):032x}",
                    "account_sid": self.account_sid,
                    "to": to,
                    "from": form.get("From"),
                    "status": "queued",
                }
            if kind == "hang":
                # Created, but answered late (option ``seconds``, default 1): a client timeout
                # after Twilio accepted the request.
                await asyncio.sleep(options.get("seconds", 1.0))
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

    async def _list(self, request: web.Request) -> web.Response:
        recorded = await self.record(request)
        self.lookups.append(recorded)
        if _basic_auth(request.headers.get("Authorization", "")) != (
            self.account_sid,
            self.auth_token,
        ) or (request.match_info["sid"] != self.account_sid):
            recorded.problem = "authentication"
            return _error(401, 20003)
        query = request.query
        unknown = sorted(set(query) - LIST_PARAMS)
        if unknown:
            recorded.problem = f"unknown parameters {unknown}"
            return _error(400, 20001)
        days: dict[str, date] = {}
        for key in ("DateSent", "DateSent<", "DateSent>"):
            if key in query:
                match = DAY.match(query[key])
                if match is None:
                    recorded.problem = f"{key} is not a date"
                    return _error(400, 20001)
                days[key] = date.fromisoformat(match.group(1))
        try:
            size = int(query.get("PageSize", "50"))
            page = int(query.get("Page", "0"))
        except ValueError:
            recorded.problem = "PageSize/Page not a number"
            return _error(400, 20001)
        if not 1 <= size <= 1000 or page < 0:
            recorded.problem = "PageSize out of range"
            return _error(400, 20001)
        if page > 0 and query.get("PageToken") != _page_token(page, size):
            # Twilio pages only through the URIs it hands out.
            recorded.problem = "Page without its PageToken"
            return _error(400, 20001)
        kind, options = self._list_script.popleft() if self._list_script else ("ok", {})
        if kind == "rate_limited":
            return _error(429, 20429, headers={"Retry-After": str(options.get("retry_after", 3))})
        if kind == "server_error":
            return _error(options.get("status", 500), 20500)
        if kind != "ok":
            raise ValueError(f"unknown answer {kind!r}")

        def wanted(message: dict[str, Any]) -> bool:
            if "To" in query and message["to"] != query["To"]:
                return False
            if "From" in query and message["from"] != query["From"]:
                return False
            if days and message["date_sent"] is None:
                return False  # not sent yet: no sent date to filter on
            sent = datetime.fromtimestamp(message["_created"], UTC).date()
            if "DateSent" in days and sent != days["DateSent"]:
                return False
            if "DateSent>" in days and sent < days["DateSent>"]:
                return False
            return not ("DateSent<" in days and sent > days["DateSent<"])

        matching = [m for m in reversed(self.messages) if wanted(m)]
        start = page * size
        items = matching[start : start + size]
        path = request.path
        filters = {k: v for k, v in query.items() if k not in ("Page", "PageSize", "PageToken")}

        def uri(number: int) -> str:
            params = {**filters, "PageSize": str(size), "Page": str(number)}
            if number > 0:
                params["PageToken"] = _page_token(number, size)
            return f"{path}?{urlencode(params)}"

        listing = {
            "messages": [_public(m) for m in items],
            "page": page,
            "page_size": size,
            "start": start,
            "end": start + max(len(items) - 1, 0),
            "uri": uri(page),
            "first_page_uri": uri(0),
            "next_page_uri": uri(page + 1) if start + size < len(matching) else None,
            "previous_page_uri": uri(page - 1) if page > 0 else None,
        }
        return web.Response(status=200, text=json.dumps(listing), content_type="application/json")


def _public(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if not k.startswith("_")}


def _page_token(page: int, size: int) -> str:
    return f"PASM{page:08d}{size:04d}"


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
