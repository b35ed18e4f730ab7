"""Local stand-ins for the upstreams the receiver pages through.

Each fake checks the request the way the real service does (method, path, auth, content type,
required fields), records what it received, and answers like the real API. Tell it how to
answer the next requests with ``answer_next(...)``; by default it succeeds.

- ``slack.FakeSlack``: incoming webhooks (``POST /services/T/B/X``) and Web API
  ``POST /api/chat.postMessage`` (with message metadata) and ``GET /api/conversations.history``.
- ``twilio.FakeTwilio``: ``POST /2010-04-01/Accounts/{sid}/Messages.json`` and ``Calls.json``,
  and the Messages list ``GET .../Messages.json``.

Read-only lookups are recorded in ``lookups``, not ``requests`` (which stays what was sent).
- ``webhook.FakeWebhook``: a generic JSON endpoint ``POST /hook`` with an optional bearer token.
- ``smtp.SmtpServer``: a real aiosmtpd server, optionally STARTTLS or implicit TLS (trustme
  certificates) and AUTH.

All listen on 127.0.0.1 port 0 and are async context managers::

    async with FakeSlack() as slack:
        url = slack.webhook_url
        ...
        assert slack.requests[0].json["text"]

Import from tests as ``from receiver.fakes.slack import FakeSlack`` (pytest puts ``tests/`` on
``sys.path`` through the root ``tests/conftest.py``); from elsewhere (the demo), put
``tests/`` on ``sys.path`` first.
"""
