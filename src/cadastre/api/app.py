"""``create_app(hub)``: the FastAPI application over one hub.

Routes read through ``hub.store`` inside a unit of work of the caller's tenant; nothing here
touches a database driver. The hub is kept on ``app.state`` for the routes' dependencies; its
lifetime belongs to whoever built it (the ``serve`` command, the demo, a test).
"""

from __future__ import annotations

from fastapi import FastAPI

import cadastre
from cadastre.api.alerts import router as alerts_router
from cadastre.api.changes import router as changes_router
from cadastre.api.conflicts import router as conflicts_router
from cadastre.api.connections import router as connections_router
from cadastre.api.entities import router as entities_router
from cadastre.api.idempotency import install as install_idempotency
from cadastre.api.identities import router as identities_router
from cadastre.api.listings import router as listings_router
from cadastre.api.metrics import router as metrics_router
from cadastre.api.oauth import router as oauth_router
from cadastre.api.problems import HANDLERS, CatchAll
from cadastre.api.reso import router as reso_router
from cadastre.api.subscriptions import router as subscriptions_router
from cadastre.api.tracing import ServerSpans
from cadastre.api.webhooks_in import IntakeFirst
from cadastre.api.webhooks_in import mount as mount_webhooks_in
from cadastre.api.writes import router as writes_router
from cadastre.bootstrap import Hub
from cadastre.console import create_console

DESCRIPTION = """The unified read API of Cadastre.

Every `/v1` route but the OAuth2 consent callback needs a tenant API key as a bearer token and
sees only that tenant's data.
Errors are RFC 9457 problem details (`application/problem+json`)."""


def create_app(hub: Hub) -> FastAPI:
    app = IntakeFirst(  # FastAPI, with vendors' webhooks answered ahead of it
        # FastAPI's own OpenTelemetry (from 0.16x) puts the path and the query string in its
        # spans (an OAuth2 callback's code) and exceptions' texts in its logs: ServerSpans
        # (api.tracing) names routes by their templates instead, and nothing else.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        title="Cadastre API",
        version=cadastre.__version__,
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "listings", "description": "Canonical listings (RESO names)"},
            {"name": "connections", "description": "Connections as the vendor gateway sees them"},
            {"name": "credentials", "description": "Vault credentials: status, never secrets"},
            {"name": "oauth", "description": "Where a vendor's consent page returns (no API key)"},
            {"name": "reso", "description": "RESO Web API (OData v4) over the canonical records"},
            {"name": "subscriptions", "description": "Webhooks out: subscriptions and deliveries"},
            {"name": "changes", "description": "The change feed: published events, in order"},
            {"name": "alerts", "description": "Alerts: what needs a person, and what to do"},
            {"name": "webhooks", "description": "Where vendors send webhooks (signed, no API key)"},
            {"name": "operations", "description": "Liveness and Prometheus metrics"},
        ],
    )
    app.state.hub = hub
    for exception, handler in HANDLERS.items():
        app.add_exception_handler(exception, handler)
    app.add_middleware(CatchAll)
    install_idempotency(app)  # Idempotency-Key on every /v1 write; outside CatchAll
    app.add_middleware(ServerSpans)  # outermost of ours: its span sees every answer, 500s too
    app.include_router(listings_router)
    app.include_router(connections_router)
    app.include_router(oauth_router)
    app.include_router(reso_router)
    app.include_router(subscriptions_router)
    app.include_router(identities_router)
    app.include_router(changes_router)
    app.include_router(entities_router)  # write-back: read and write every entity
    app.include_router(writes_router)
    app.include_router(conflicts_router)
    app.include_router(alerts_router)  # GET /v1/alerts, resolve (docs/alerts.md)
    mount_webhooks_in(app)  # for the OpenAPI document: IntakeFirst answers the requests
    app.mount("/console", create_console(hub))  # the operations console (docs/console.md)
    app.include_router(metrics_router)  # GET /metrics: loopback, or CADASTRE_METRICS_TOKEN

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
