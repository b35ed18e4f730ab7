"""Incident API: ``GET /api/incidents`` and ``GET /api/incidents/{id}`` (authenticated).

Incidents are opened, raised and resolved inside the store's ingest transaction
(``SqlStore._update_incident``); this module is their read side. The lifecycle (acknowledge,
escalate, monitoring, records) adds its routes through ``add_routes``' callers.
"""

from aiohttp import web

from voicedrive_receiver.app import require_auth, services
from voicedrive_receiver.errors import StoreUnavailable

STATUSES = ("open", "acknowledged", "resolved", "monitoring", "closed")


async def list_incidents(request: web.Request) -> web.Response:
    """Newest first; ``?status=`` filters, ``?limit=`` caps (default 100, max 1000)."""
    require_auth(request)
    status = request.query.get("status")
    if status is not None and status not in STATUSES:
        return web.json_response(
            {"error": f"status must be one of {', '.join(STATUSES)}", "field": "status"},
            status=400,
        )
    raw_limit = request.query.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
        return web.json_response(
            {"error": "limit must be an integer from 1 to 1000", "field": "limit"}, status=400
        )
    try:
        found = await services(request).store.list_incidents(status=status, limit=int(raw_limit))
    except StoreUnavailable:
        return web.json_response({"error": "store unavailable"}, status=503)
    return web.json_response({"incidents": [i.to_json() for i in found]})


async def get_incident(request: web.Request) -> web.Response:
    """One incident with its level history, timeline and deliveries."""
    require_auth(request)
    incident_id = request.match_info["id"]
    try:
        found = await services(request).store.get_incident(incident_id)
    except StoreUnavailable:
        return web.json_response({"error": "store unavailable"}, status=503)
    if found is None:
        return web.json_response({"error": f"no incident {incident_id!r}"}, status=404)
    return web.json_response(found.to_json())


def add_routes(app: web.Application) -> None:
    """Register the incident routes."""
    app.router.add_get("/api/incidents", list_incidents)
    app.router.add_get("/api/incidents/{id}", get_incident)
