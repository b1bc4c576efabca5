"""Admin calls that move the MLS the way its agents and operators do, for replication tests.
JSON in and out, no auth, never rate limited or faulted; a bad body is 400 and changes nothing.

- ``POST /admin/touch``: ``{"keys": [...]}`` or ``{"count": n}``, optional ``"changes"``,
  ``"at"``, ``"create": n``: agents edit (and add) listings.
- ``POST /admin/bump``: ``{"at"?}``: every record's ModificationTimestamp becomes now.
- ``POST /admin/delete``: ``{"keys": [...]}`` or ``{"count": n}``: listings leave the feed.
- ``POST /admin/media``: ``{"key": K, "photos"?: n}``: an agent replaces a listing's photos.
- ``GET|POST /admin/dialect``: what the MLS speaks now; a POST changes it while it runs:
  ``{"add_field": {"name", "type", "value"?}}``, ``{"remove_field": name}``,
  ``{"retype_field": {"name", "type"}}``, ``{"add_enum_value": {"field", "value", "count"}}``.
- ``GET|POST|DELETE /admin/webhooks``: the webhook subscription (``WebhookSettings`` fields as
  JSON: ``url``, ``secret``, ``drop_rate``, ``batch`` ...); GET shows it (never the secret) and
  the counters; DELETE unsubscribes. ``POST /admin/webhooks/release`` ``{"order"?}`` sends the
  notifications held while ``hold`` is set.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, Route

from cadastre.simulators.base import json_response, read_json
from cadastre.simulators.faults import odata_error
from cadastre.simulators.reso.webhooks import WebhookSettings

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from cadastre.simulators.reso.app import ResoSimulator

Handler = Callable[["ResoSimulator", dict[str, Any]], Any]


def admin_routes(sim: ResoSimulator) -> list[BaseRoute]:
    return [
        Route(
            "/admin/touch",
            _endpoint(sim, _touch, {"keys", "count", "changes", "at", "create"}),
            methods=["POST"],
        ),
        Route("/admin/bump", _endpoint(sim, _bump, {"at"}), methods=["POST"]),
        Route("/admin/delete", _endpoint(sim, _delete, {"keys", "count"}), methods=["POST"]),
        Route("/admin/media", _endpoint(sim, _media, {"key", "photos"}), methods=["POST"]),
        Route("/admin/dialect", _dialect_endpoint(sim), methods=["GET", "POST"]),
        Route("/admin/webhooks", _webhooks_endpoint(sim), methods=["GET", "POST", "DELETE"]),
        Route(
            "/admin/webhooks/release",
            _endpoint(sim, _release, {"order"}),
            methods=["POST"],
        ),
    ]


def _endpoint(
    sim: ResoSimulator, handle: Handler, allowed: set[str]
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            body = await read_json(request)
            body = {} if body is None else body
            if not isinstance(body, dict):
                raise ValueError("the body is a JSON object")
            unknown = set(body) - allowed
            if unknown:
                raise ValueError(f"unknown fields: {sorted(unknown)}")
            answer = handle(sim, body)
        except (ValueError, TypeError) as exc:
            return json_response(odata_error("BadRequest", str(exc)), 400)
        return json_response(answer)

    endpoint.__name__ = handle.__name__.lstrip("_")
    return endpoint


def _touch(sim: ResoSimulator, body: dict[str, Any]) -> dict[str, Any]:
    create = body.get("create") or 0
    if isinstance(create, bool) or not isinstance(create, int) or create < 0:
        raise ValueError("create is a whole number >= 0")  # checked before anything moves
    touched: list[str] = []
    if body.get("keys") is not None or body.get("count") is not None:
        touched = sim.touch(
            keys=body.get("keys"),
            count=body.get("count"),
            changes=body.get("changes"),
            at=body.get("at"),
        )
    created = sim.create(create, at=body.get("at"))
    return {"touched": touched + created, "created": created}


def _bump(sim: ResoSimulator, body: dict[str, Any]) -> dict[str, Any]:
    return {"bumped": sim.bump(at=body.get("at"))}


def _delete(sim: ResoSimulator, body: dict[str, Any]) -> dict[str, Any]:
    deleted = sim.delete(keys=body.get("keys"), count=body.get("count"))
    return {"deleted": deleted, "style": sim.dialect.deletion.style}


def _media(sim: ResoSimulator, body: dict[str, Any]) -> dict[str, Any]:
    key = body.get("key")
    if not isinstance(key, str):
        raise ValueError("key is a ListingKey")
    photos = body.get("photos")
    if photos is not None and not isinstance(photos, int):
        raise ValueError("photos is a whole number")
    return sim.change_media(key, photos)


def _release(sim: ResoSimulator, body: dict[str, Any]) -> dict[str, Any]:
    order = body.get("order", "fifo")
    if not isinstance(order, str):
        raise ValueError("order is text")
    return {"released": sim.webhooks.release(order)}


def _webhooks_state(sim: ResoSimulator) -> dict[str, Any]:
    settings = sim.webhooks.settings
    return {
        "subscription": settings.to_json() if settings is not None else None,
        "stats": asdict(sim.webhooks.stats),
    }


def _webhooks_endpoint(sim: ResoSimulator) -> Callable[[Request], Awaitable[Response]]:
    def subscribe(sim: ResoSimulator, body: dict[str, Any]) -> dict[str, Any]:
        sim.webhooks.configure(WebhookSettings.from_json(body))
        return _webhooks_state(sim)

    subscribe.__name__ = "_webhooks"
    posted = _endpoint(sim, subscribe, set(WebhookSettings.__dataclass_fields__))

    async def endpoint(request: Request) -> Response:
        if request.method == "DELETE":
            await sim.webhooks.stop()
        elif request.method == "POST":
            return await posted(request)
        return json_response(_webhooks_state(sim))

    return endpoint


def describe(sim: ResoSimulator) -> dict[str, Any]:
    dialect = sim.dialect
    limit = sim.rate_limit
    return {
        "name": dialect.name,
        "local_prefix": dialect.local_prefix,
        "fields": {name: spec.edm for name, spec in sim.fields.items()},
        "enums": dialect.enums,
        "page": {**dialect.page.model_dump(), "max": sim.page_size_max},
        "rate_limit": [[w.requests, w.per] for w in limit.windows] if limit else None,
        "deletion": dialect.deletion.model_dump(),
        "media": dialect.media.model_dump(),
        "schema_version": sim.schema.version,
    }


def _dialect_endpoint(sim: ResoSimulator) -> Callable[[Request], Awaitable[Response]]:
    changes = {"add_field", "remove_field", "retype_field", "add_enum_value"}

    def change(sim: ResoSimulator, body: dict[str, Any]) -> dict[str, Any]:
        if len(body) != 1:
            raise ValueError(f"one change a call: {sorted(changes)}")
        (kind, spec), touched = next(iter(body.items())), []
        if kind == "remove_field":
            if not isinstance(spec, str):
                raise ValueError("remove_field names a field")
            sim.remove_field(spec)
        elif not isinstance(spec, dict):
            raise ValueError(f"{kind} is a JSON object")
        elif kind == "add_field":
            _only(spec, {"name", "type"}, {"value"})
            sim.add_field(spec["name"], spec["type"], spec.get("value"))
        elif kind == "retype_field":
            _only(spec, {"name", "type"}, set())
            sim.retype_field(spec["name"], spec["type"])
        else:
            _only(spec, {"field", "value", "count"}, set())
            if not isinstance(spec["value"], str) or not isinstance(spec["count"], int):
                raise ValueError("add_enum_value: value is text, count a whole number")
            touched = sim.add_enum_value(spec["field"], spec["value"], spec["count"])
        return {**describe(sim), "touched": touched}

    change.__name__ = "_dialect"
    posted = _endpoint(sim, change, changes)

    async def endpoint(request: Request) -> Response:
        if request.method == "GET":
            return json_response(describe(sim))
        return await posted(request)

    return endpoint


def _only(spec: dict[str, Any], required: set[str], optional: set[str]) -> None:
    missing, unknown = required - set(spec), set(spec) - required - optional
    if missing or unknown:
        raise ValueError(f"needs {sorted(required)} (missing {sorted(missing)}), "
                         f"may have {sorted(optional)} (unknown {sorted(unknown)})")  # fmt: skip
