"""The HubSpot simulator's admin endpoints (JSON, no auth, never rate limited or faulted), and
the deterministic records it can start with.

- ``POST /admin/seed`` ``{"contacts": n, "deals": n, "seed"?: 7, "spread"?: seconds}``: that
  many records, modified one after another ``spread`` seconds apart, ending now.
- ``POST /admin/ui/create`` ``{"type", "properties"}``, ``/admin/ui/edit`` ``{"type", "id",
  "properties", "changeSource"?, "sourceId"?}``, ``/admin/ui/archive`` and ``/admin/ui/restore``
  ``{"type", "id"}``, ``/admin/ui/merge`` ``{"primaryObjectId", "objectIdToMerge"}``: a person in
  HubSpot's UI (webhooks fire with ``changeSource: CRM_UI``; an edit may name another source to
  play a peer automation); not counted as API writes.
- ``GET /admin/objects?type=contacts``: every record as held (archived ones too), merged ids
  mapped to their survivor under ``merged``.
- ``POST /admin/fail-writes`` ``{"count", "mode": "error" | "lost"}``; ``GET|POST
  /admin/limits`` ``{"api": {"requests", "per"} | null, "search": ... | null}``;
  ``POST /admin/clock`` ``{"advance": seconds}``.
- ``POST /admin/oauth/grant`` ``{"scope"?}`` -> a token answer; ``POST /admin/oauth/code``
  ``{"redirect_uri", "scope"?}`` -> ``{"code"}``; ``POST /admin/oauth/revoke-all``.
- ``GET|POST|DELETE /admin/webhooks`` (``WebhookSettings`` fields), ``POST
  /admin/webhooks/release`` ``{"order"?}``.

A bad body is 400 ``{"status": "error", "message", "category": "VALIDATION_ERROR"}`` and changes
nothing.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, Route

from cadastre.simulators.base import json_response, read_json
from cadastre.simulators.hubspot.objects import (
    CONTACTS,
    DEALS,
    OBJECT_TYPES,
    HubSpotError,
    stamp,
)
from cadastre.simulators.hubspot.webhooks import WebhookSettings
from cadastre.simulators.ratelimit import RateLimit

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request
    from starlette.responses import Response

    from cadastre.simulators.hubspot.app import HubSpotSimulator

FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim")
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
        "Perlman", "Berners-Lee")  # fmt: skip
STAGES = ("appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "contractsent",
          "closedwon", "closedlost")  # fmt: skip


def seed(sim: HubSpotSimulator, *, contacts: int = 0, deals: int = 0, seed: int = 7,
         spread: float = 1.0) -> list[str]:  # fmt: skip
    """Records as if they had been there: no webhooks, no API counts. Their modification times
    run ``spread`` seconds apart, the newest now. The ids made."""
    rng = random.Random(seed)  # noqa: S311 - reproducible, not secret
    now = sim.clock.now()
    total = contacts + deals
    made: list[str] = []
    numbered = len(sim.objects.all(CONTACTS))
    for n in range(total):
        kind = CONTACTS if n < contacts else DEALS
        when = now - timedelta(seconds=spread * (total - 1 - n))
        if kind == CONTACTS:
            first, last = rng.choice(FIRST), rng.choice(LAST)
            numbered += 1
            number = numbered
            props: dict[str, str | None] = {
                "firstname": first, "lastname": last,
                "email": f"{first}.{last}.{number}@example.com".lower(),
                "mobilephone": f"+1512555{rng.randrange(10_000):04d}",
                "phone": f"+1512444{rng.randrange(10_000):04d}",
            }  # fmt: skip
        else:
            props = {
                "dealname": f"Lease {rng.randrange(100, 999)} Elm St #{n}",
                "dealstage": rng.choice(STAGES), "pipeline": "default",
                "amount": f"{rng.randrange(900, 4000)}.00",
                "closedate": stamp(now + timedelta(days=rng.randrange(1, 90))),
            }  # fmt: skip
        record = sim.objects.create(kind, props, when)
        made.append(record.id)
    return made


def admin_routes(sim: HubSpotSimulator) -> list[BaseRoute]:
    def handler(act: Callable[[dict[str, Any]], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                body = await read_json(request) if request.method != "GET" else {}
                if body is None:
                    body = {}
                if not isinstance(body, dict):
                    raise ValueError("the body is a JSON object")
                body = {**dict(request.query_params), **body}
                return json_response(act(body))
            except HubSpotError as exc:
                return json_response({"status": "error", "message": exc.message,
                                      "category": exc.category}, exc.status)  # fmt: skip
            except (ValueError, TypeError, KeyError) as exc:
                return json_response({"status": "error", "message": str(exc),
                                      "category": "VALIDATION_ERROR"}, 400)  # fmt: skip

        return endpoint

    def kind_of(body: dict[str, Any]) -> str:
        kind = body.get("type", CONTACTS)
        if kind not in OBJECT_TYPES:
            raise ValueError(f"type is one of {list(OBJECT_TYPES)}")
        return str(kind)

    def do_seed(body: dict[str, Any]) -> Any:
        ids = seed(
            sim, contacts=int(body.get("contacts", 0)), deals=int(body.get("deals", 0)),
            seed=int(body.get("seed", 7)), spread=float(body.get("spread", 1.0)),
        )  # fmt: skip
        return {"created": ids}

    def ui_create(body: dict[str, Any]) -> Any:
        return sim.ui_create(kind_of(body), body.get("properties", {})).answer()

    def ui_edit(body: dict[str, Any]) -> Any:
        kind, object_id, props = kind_of(body), str(body["id"]), body.get("properties", {})
        if "changeSource" in body:
            given = body.get("sourceId")
            source_id = str(given) if given is not None else None
            source = str(body["changeSource"])
            record = sim.ui_edit(kind, object_id, props, source=source, source_id=source_id)
        else:
            record = sim.ui_edit(kind, object_id, props)
        return record.answer()

    def ui_archive(body: dict[str, Any]) -> Any:
        return sim.ui_archive(kind_of(body), str(body["id"])).answer()

    def ui_restore(body: dict[str, Any]) -> Any:
        return sim.ui_restore(kind_of(body), str(body["id"])).answer()

    def ui_merge(body: dict[str, Any]) -> Any:
        return sim.merge(str(body["primaryObjectId"]), str(body["objectIdToMerge"])).answer()

    def objects(body: dict[str, Any]) -> Any:
        kind = kind_of(body)
        held = sim.objects.all(kind)
        return {"results": [{**o.answer(list(o.properties)), "archived": o.archived}
                            for o in held]}  # fmt: skip

    def fail_writes(body: dict[str, Any]) -> Any:
        sim.fail_writes(int(body.get("count", 1)), str(body.get("mode", "error")))
        return {"count": int(body.get("count", 1)), "mode": body.get("mode", "error")}

    def limits(body: dict[str, Any]) -> Any:
        for name in ("api", "search"):
            if name in body:
                value = body[name]
                setattr(sim, f"{name}_limit", RateLimit(**value) if value is not None else None)
        shown = {}
        for name in ("api", "search"):
            limit = getattr(sim, f"{name}_limit")
            shown[name] = None if limit is None else {"requests": limit.requests,
                                                      "per": limit.per}  # fmt: skip
        return shown

    def clock(body: dict[str, Any]) -> Any:
        seconds = float(body.get("advance", 0))
        if seconds < 0:
            raise ValueError("time does not go backwards")
        sim.offset_clock.offset += seconds
        return {"now": sim.clock.now().isoformat(), "offset": sim.offset_clock.offset}

    def grant(body: dict[str, Any]) -> Any:
        return sim.oauth.grant(str(body.get("scope", "")))

    def code(body: dict[str, Any]) -> Any:
        return {"code": sim.oauth.issue_code(str(body["redirect_uri"]),
                                             str(body.get("scope", "")))}  # fmt: skip

    def revoke_all(body: dict[str, Any]) -> Any:
        return {"revoked": sim.oauth.revoke_all()}

    def webhooks(body: dict[str, Any]) -> Any:
        if body:
            sim.webhooks.configure(WebhookSettings.from_json(body))
        settings = sim.webhooks.settings
        return {"subscription": settings.to_json() if settings else None,
                "stats": vars(sim.webhooks.stats)}  # fmt: skip

    def release(body: dict[str, Any]) -> Any:
        return {"released": sim.webhooks.release(str(body.get("order", "fifo")))}

    async def unsubscribe(request: Request) -> Response:
        await sim.webhooks.stop()
        return json_response({"subscription": None})

    post = ["POST"]
    return [
        Route("/admin/seed", handler(do_seed), methods=post),
        Route("/admin/ui/create", handler(ui_create), methods=post),
        Route("/admin/ui/edit", handler(ui_edit), methods=post),
        Route("/admin/ui/archive", handler(ui_archive), methods=post),
        Route("/admin/ui/restore", handler(ui_restore), methods=post),
        Route("/admin/ui/merge", handler(ui_merge), methods=post),
        Route("/admin/objects", handler(objects), methods=["GET"]),
        Route("/admin/fail-writes", handler(fail_writes), methods=post),
        Route("/admin/limits", handler(limits), methods=["GET", "POST"]),
        Route("/admin/clock", handler(clock), methods=post),
        Route("/admin/oauth/grant", handler(grant), methods=post),
        Route("/admin/oauth/code", handler(code), methods=post),
        Route("/admin/oauth/revoke-all", handler(revoke_all), methods=post),
        Route("/admin/webhooks", handler(webhooks), methods=["GET", "POST"]),
        Route("/admin/webhooks", unsubscribe, methods=["DELETE"]),
        Route("/admin/webhooks/release", handler(release), methods=post),
    ]
