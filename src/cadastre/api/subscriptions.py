"""``/v1/subscriptions`` and ``/v1/deliveries``: webhooks out, for platform services.

A service subscribes its endpoint to event types and is sent each matching event, signed per
Standard Webhooks with the subscription's secret. The secret is in the answer to the creation and
to a rotation, and nowhere else, ever (answered with ``Cache-Control: no-store``). Reading needs
any key of the tenant; creating, removing, rotating, enabling and redelivering need a write key.
Another tenant's subscription or delivery id answers 404, as an unknown one does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from cadastre.api.auth import Reader, hub_of
from cadastre.api.listings import PROBLEMS, _problem
from cadastre.api.problems import Problem
from cadastre.errors import ConfigurationError, NotFound
from cadastre.ports import (
    ApiKey,
    ApiKeyScope,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    PayloadClass,
    Subscription,
)

router = APIRouter(prefix="/v1", tags=["subscriptions"])
NO_STORE = {"Cache-Control": "no-store"}
MAX_PAGE = 200


async def writer(key: Reader) -> ApiKey:
    if key.scope is not ApiKeyScope.WRITE:
        raise Problem(403, "this API key may only read; a write key is required")
    return key


Writer = Annotated[ApiKey, Depends(writer)]
WRITE_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **PROBLEMS,
    403: _problem("The API key may only read"),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: _problem("No such subscription or delivery in the key's tenant")
}


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="https, or http to a host the operator allows")
    event_types: list[str] = Field(
        min_length=1, max_length=50,
        description="types (cadastre.listing.updated.v1: that major, converted when needed) or "
        "families (cadastre.listing.*: every type, as emitted)",
    )  # fmt: skip
    description: str = Field(default="", max_length=500)
    format: Literal["standard", "slack"] = Field(
        default="standard",
        description="standard: the event as Standard Webhooks signed CloudEvents JSON; slack: a "
        "Slack incoming-webhook message (text and blocks), for alert types only "
        "(cadastre.alert.*)",
    )


class SubscriptionOut(BaseModel):
    id: str
    url: str
    event_types: list[str]
    description: str
    status: Literal["active", "disabled"]
    status_reason: str
    failing_since: datetime | None
    created_at: datetime
    updated_at: datetime
    format: Literal["standard", "slack"]


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="the signing secret (whsec_...): shown this once only")


class SecretRotated(BaseModel):
    id: str
    secret: str = Field(description="the new signing secret: shown this once only")
    previous_valid_until: datetime = Field(description="the old secret signs too until then")


class DeliveryOut(BaseModel):
    id: str
    subscription: str
    event_id: str = Field(description="the webhook-id header: the same on every attempt")
    event_type: str
    status: Literal["pending", "delivered", "dead", "cancelled"]
    attempts: int
    redeliveries: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str
    created_at: datetime
    delivered_at: datetime | None


class AttemptOut(BaseModel):
    redelivery: int
    number: int
    at: datetime
    status: int | None
    error: str
    seconds: float


class DeliveryDetail(DeliveryOut):
    history: list[AttemptOut] = Field(description="every attempt, oldest first")


class DeliveryPage(BaseModel):
    data: list[DeliveryOut]
    next_cursor: str | None


def _subscription(s: Subscription) -> SubscriptionOut:
    return SubscriptionOut(
        id=s.id, url=s.url, event_types=list(s.event_types), description=s.description,
        status=s.status.value, status_reason=s.status_reason, failing_since=s.failing_since,
        created_at=s.created_at, updated_at=s.updated_at, format=s.format.value,
    )  # fmt: skip


def _delivery(d: Delivery) -> DeliveryOut:
    return DeliveryOut(
        id=d.id, subscription=d.subscription, event_id=d.event_id, event_type=d.event_type,
        status=d.status.value, attempts=d.attempts, redeliveries=d.redeliveries,
        next_attempt_at=d.next_attempt_at, last_status=d.last_status, last_error=d.last_error,
        created_at=d.created_at, delivered_at=d.delivered_at,
    )  # fmt: skip


def _attempt(a: DeliveryAttempt) -> AttemptOut:
    return AttemptOut(redelivery=a.redelivery, number=a.number, at=a.at, status=a.status,
                      error=a.error, seconds=round(a.seconds, 6))  # fmt: skip


def _not_found(exc: NotFound) -> Problem:
    return Problem(404, str(exc))


@router.post(
    "/subscriptions",
    status_code=201,
    response_model=SubscriptionCreated,
    responses={
        403: _problem("The key's payload class is not full"),
        422: _problem("The URL or an event type is refused"),
        **WRITE_PROBLEMS,
    },
    summary="Subscribe an endpoint to event types (the answer holds the secret, once)",
)
async def create_subscription(
    request: Request, response: Response, key: Writer, body: SubscriptionIn
) -> SubscriptionCreated:
    if key.payload_class is not PayloadClass.FULL:
        # Deliveries carry whole events: an IDX or VOW key would read through a subscription
        # the fields its class withholds on /v1/listings and /v1/changes.
        raise Problem(
            403,
            f"an API key of payload class {key.payload_class.value!r} cannot subscribe: "
            "deliveries carry every field of an event; use a key of class 'full'",
        )
    try:
        created = await hub_of(request).webhooks.subscriptions.add(
            key.tenant, url=body.url, event_types=body.event_types,
            description=body.description, actor=f"api:{key.key_id}", format=body.format,
        )  # fmt: skip
    except ConfigurationError as exc:
        raise Problem(422, str(exc)) from None
    response.headers.update(NO_STORE)
    response.headers["Location"] = f"/v1/subscriptions/{created.subscription.id}"
    shown = _subscription(created.subscription).model_dump()
    return SubscriptionCreated(**shown, secret=created.secret.reveal())


@router.get(
    "/subscriptions", response_model=list[SubscriptionOut], responses=PROBLEMS,
    summary="The tenant's subscriptions (never a secret)",
)  # fmt: skip
async def list_subscriptions(request: Request, key: Reader) -> list[SubscriptionOut]:
    return [_subscription(s) for s in await hub_of(request).webhooks.subscriptions.all(key.tenant)]


@router.get(
    "/subscriptions/{id}", response_model=SubscriptionOut, responses={**NOT_FOUND, **PROBLEMS},
    summary="One subscription",
)  # fmt: skip
async def get_subscription(request: Request, key: Reader, id: str) -> SubscriptionOut:
    try:
        return _subscription(await hub_of(request).webhooks.subscriptions.get(key.tenant, id))
    except NotFound as exc:
        raise _not_found(exc) from None


@router.delete(
    "/subscriptions/{id}", status_code=204, responses={**NOT_FOUND, **WRITE_PROBLEMS},
    summary="Remove a subscription and its secret; its waiting deliveries are cancelled",
)  # fmt: skip
async def delete_subscription(request: Request, key: Writer, id: str) -> Response:
    try:
        await hub_of(request).webhooks.subscriptions.remove(
            key.tenant, id, actor=f"api:{key.key_id}"
        )
    except NotFound as exc:
        raise _not_found(exc) from None
    return Response(status_code=204)


@router.post(
    "/subscriptions/{id}/rotate-secret", response_model=SecretRotated,
    responses={**NOT_FOUND, **WRITE_PROBLEMS},
    summary="A new signing secret; the old one signs too for 24 hours",
)  # fmt: skip
async def rotate_secret(
    request: Request, response: Response, key: Writer, id: str
) -> SecretRotated:
    try:
        rotated = await hub_of(request).webhooks.subscriptions.rotate_secret(
            key.tenant, id, actor=f"api:{key.key_id}"
        )
    except NotFound as exc:
        raise _not_found(exc) from None
    response.headers.update(NO_STORE)
    return SecretRotated(
        id=id, secret=rotated.secret.reveal(), previous_valid_until=rotated.previous_valid_until
    )


@router.post(
    "/subscriptions/{id}/enable", response_model=SubscriptionOut,
    responses={**NOT_FOUND, **WRITE_PROBLEMS},
    summary="Enable a disabled subscription: its waiting deliveries are sent at once",
)  # fmt: skip
async def enable_subscription(request: Request, key: Writer, id: str) -> SubscriptionOut:
    try:
        enabled = await hub_of(request).webhooks.subscriptions.enable(
            key.tenant, id, actor=f"api:{key.key_id}"
        )
    except NotFound as exc:
        raise _not_found(exc) from None
    return _subscription(enabled)


@router.get(
    "/subscriptions/{id}/deliveries", response_model=DeliveryPage,
    responses={**NOT_FOUND, **PROBLEMS}, summary="A subscription's deliveries, oldest first",
)  # fmt: skip
async def list_deliveries(
    request: Request,
    key: Reader,
    id: str,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=64, description="a next_cursor")] = None,
) -> DeliveryPage:
    hub = hub_of(request)
    try:
        await hub.webhooks.subscriptions.get(key.tenant, id)
    except NotFound as exc:
        raise _not_found(exc) from None
    found = await hub.webhooks.deliveries.find(
        key.tenant, status=status, subscription=id, after=cursor, limit=limit + 1
    )
    more = len(found) > limit
    page = found[:limit]
    return DeliveryPage(
        data=[_delivery(d) for d in page], next_cursor=page[-1].id if more and page else None
    )


@router.get(
    "/deliveries/{id}", response_model=DeliveryDetail, responses={**NOT_FOUND, **PROBLEMS},
    summary="One delivery, with every attempt",
)  # fmt: skip
async def get_delivery(request: Request, key: Reader, id: str) -> DeliveryDetail:
    try:
        delivery, attempts = await hub_of(request).webhooks.deliveries.get(key.tenant, id)
    except NotFound as exc:
        raise _not_found(exc) from None
    shown = _delivery(delivery).model_dump()
    return DeliveryDetail(**shown, history=[_attempt(a) for a in attempts])


@router.post(
    "/deliveries/{id}/redeliver", status_code=202, response_model=DeliveryOut,
    responses={**NOT_FOUND, **WRITE_PROBLEMS,
               409: _problem("Pending already (on its way), or its subscription was removed")},
    summary="Send a dead or delivered delivery again, its attempts starting over",
)  # fmt: skip
async def redeliver(request: Request, key: Writer, id: str) -> DeliveryOut:
    service = hub_of(request).webhooks.deliveries
    try:
        report = await service.redeliver(key.tenant, [id], actor=f"api:{key.key_id}")
    except NotFound as exc:
        raise _not_found(exc) from None
    if not report.redelivered:
        raise Problem(409, f"delivery {id!r} is not redelivered: {report.skipped[id]}")
    return _delivery(report.redelivered[0])
