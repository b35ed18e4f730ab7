"""The Twilio REST API (2010-04-01) as the SMS and phone channels use it.

``POST {api_url}/2010-04-01/Accounts/{AccountSid}/{Messages|Calls}.json``, form-encoded, basic
auth ``AccountSid:AuthToken``; 201 with the new resource's ``sid``; errors as JSON
``{"code", "message", "more_info", "status"}``. The ``message`` often quotes the phone
number, so only the numeric ``code`` goes into a result.

Lists (``GET .../Messages.json``) answer ``{"messages": [...], "next_page_uri": ...}``, newest
first, ``next_page_uri`` relative to the API host and null on the last page.
"""

import base64
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from yarl import URL

from voicedrive_common.confload import Node
from voicedrive_common.secrets import SecretRef
from voicedrive_receiver.channels import _http
from voicedrive_receiver.channels.base import DeliveryResult, OutboundMessage

DEFAULT_API_URL = "https://api.twilio.com"
RATE_LIMIT_CODE = 20429

SettingsT = TypeVar("SettingsT")


@dataclass(frozen=True)
class TwilioSettings:
    """Account, credentials and sender shared by the SMS and phone channels."""

    account_sid: SecretRef
    auth_token: SecretRef
    from_number: SecretRef | None
    messaging_service_sid: str | None = None
    api_url: str = DEFAULT_API_URL
    timeout: float = 10.0


def parse_twilio(node: Node, *, allow_service: bool) -> TwilioSettings:
    """Read the Twilio keys (the caller reads its own keys and calls ``node.done()``)."""
    account_sid = node.secret("account_sid")
    auth_token = node.secret("auth_token")
    from_number = node.secret("from", required=False)
    service = node.text("messaging_service_sid", None) if allow_service else None
    if from_number is None and service is None:
        wanted = "from or messaging_service_sid" if allow_service else "from"
        raise node.error("from", f"is required (set {wanted})")
    if from_number is not None and service is not None:
        raise node.error("from", "set either from or messaging_service_sid, not both")
    api_url = node.text("api_url", DEFAULT_API_URL).rstrip("/")
    _http.check_http_url(api_url, node.path + ".api_url")
    assert account_sid is not None
    assert auth_token is not None
    return TwilioSettings(
        account_sid=account_sid,
        auth_token=auth_token,
        from_number=from_number,
        messaging_service_sid=service,
        api_url=api_url,
        timeout=node.duration("timeout", 10.0, lo=0.1),
    )


class TwilioClient:
    """Creates Messages and Calls for one account over one pooled session."""

    def __init__(self, settings: TwilioSettings) -> None:
        self._account_sid = settings.account_sid.resolve().reveal()
        auth_token = settings.auth_token.resolve().reveal()
        self.sender: dict[str, str] = {}
        self.messaging_service_sid = settings.messaging_service_sid
        if settings.from_number is not None:
            self.sender["From"] = settings.from_number.resolve().reveal()
        elif settings.messaging_service_sid is not None:
            self.sender["MessagingServiceSid"] = settings.messaging_service_sid
        self._api_url = settings.api_url
        self._base = f"{settings.api_url}/2010-04-01/Accounts/{self._account_sid}"
        self._session = _http.new_session(settings.timeout)
        credentials = f"{self._account_sid}:{auth_token}".encode()
        self._headers = {"Authorization": "Basic " + base64.b64encode(credentials).decode("ascii")}

    async def create(self, resource: str, form: dict[str, str]) -> DeliveryResult:
        """POST a new ``resource`` (``Messages`` or ``Calls``) and classify the answer."""
        what = f"twilio {resource}"
        reply = await _http.request(
            self._session,
            "POST",
            f"{self._base}/{resource}.json",
            what=what,
            data={**self.sender, **form},
            headers=self._headers,
        )
        if isinstance(reply, DeliveryResult):
            return reply
        body = _http.json_object(reply.text)
        if reply.status in (200, 201) and body is not None and body.get("sid"):
            state = _http.safe_code(body.get("status", "")) or "accepted"
            return DeliveryResult(ok=True, detail=f"{what}: {state}", upstream_id=str(body["sid"]))
        code = body.get("code") if body is not None else None
        code_text = _http.safe_code(code) if code is not None else ""
        if reply.status in (200, 201):
            return DeliveryResult(ok=False, detail=f"{what}: HTTP {reply.status} without a sid")
        if code == RATE_LIMIT_CODE and reply.status != 429:
            return DeliveryResult(
                ok=False,
                detail=f"{what}: HTTP {reply.status} error {code_text}",
                retry_after=_http.retry_after(reply.headers),
            )
        return _http.failure(reply.status, reply.headers, what=what, code=code_text)

    async def list_pages(
        self, resource: str, params: Mapping[str, str], *, max_pages: int
    ) -> AsyncGenerator[list[dict[str, Any]] | DeliveryResult, None]:
        """Pages of a list resource (``Messages``), following ``next_page_uri``.

        Yields each page's items; a failed result ends the listing (an error, or more pages
        than ``max_pages``).
        """
        what = f"twilio {resource} list"
        key = resource.lower()
        url: str | URL = f"{self._base}/{resource}.json"
        query: Mapping[str, str] | None = params
        prefix = self._base.removeprefix(self._api_url) + f"/{resource}.json"
        for _ in range(max_pages):
            reply = await _http.request(
                self._session, "GET", url, what=what, params=query, headers=self._headers
            )
            if isinstance(reply, DeliveryResult):
                yield DeliveryResult(ok=False, detail=reply.detail)
                return
            body = _http.json_object(reply.text)
            if reply.status != 200 or body is None:
                code = body.get("code") if body is not None else None
                suffix = f" error {_http.safe_code(code)}" if code is not None else ""
                yield DeliveryResult(ok=False, detail=f"{what}: HTTP {reply.status}{suffix}")
                return
            items = body.get(key)
            if not isinstance(items, list):
                yield DeliveryResult(ok=False, detail=f"{what}: no {key} list")
                return
            yield [item for item in items if isinstance(item, dict)]
            next_uri = body.get("next_page_uri")
            if not next_uri:
                return
            # Only ever follow a page of the same list, on the configured host.
            if not isinstance(next_uri, str) or not next_uri.startswith(prefix + "?"):
                yield DeliveryResult(ok=False, detail=f"{what}: unexpected next_page_uri")
                return
            # Already encoded by Twilio: re-encoding would turn the To number's %2B into a space.
            url, query = URL(self._api_url + next_uri, encoded=True), None
        yield DeliveryResult(ok=False, detail=f"{what}: more than {max_pages} pages")

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._session.close()


class TwilioChannel(Generic[SettingsT]):
    """What the SMS and phone channels hold alike: a name, their settings and one client."""

    def __init__(self, name: str, settings: SettingsT, client: TwilioClient) -> None:
        self.name = name
        self._settings = settings
        self._client = client

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._client.close()


def recipient_number(message: OutboundMessage, *, kind: str) -> str | DeliveryResult:
    """The recipient's number, or the permanent failure a recipient without one is."""
    to = _http.recipient_address(message.recipient)
    if not to:
        return DeliveryResult(ok=False, detail=f"{kind}: recipient has no number", permanent=True)
    return to
