"""``/v1/identities``: the links between a CRM contact and a PMS resident of one person
(``docs/identity.md``). Reading needs any key of the tenant; linking and unlinking need a write
key, and are written to the audit log as ``api:<key id>``. Another tenant's link answers 404, as
an unknown one does; a contact or resident the tenant does not hold makes a link request 422.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from cadastre.api.auth import Reader, hub_of
from cadastre.api.listings import PROBLEMS, _problem
from cadastre.api.problems import Problem
from cadastre.api.subscriptions import WRITE_PROBLEMS, Writer
from cadastre.errors import AlreadyExists, LinkRefused, NotFound
from cadastre.ports import IdentityLink, LinkState

router = APIRouter(prefix="/v1", tags=["identities"])
MAX_PAGE = 200
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _problem("No such link in the key's tenant")}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: _problem("The link's state does not allow it, or the resident is linked elsewhere")
}


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_id: str = Field(min_length=1, max_length=255, description="the Contact's id")
    resident_id: str = Field(min_length=1, max_length=255, description="the Resident's id")
    note: str = Field(default="", max_length=1000, description="why, for the audit log")


class LinkOut(BaseModel):
    id: str
    contact_id: str
    resident_id: str
    state: Literal["suggested", "linked", "rejected"]
    how: Literal["auto", "manual"]
    confidence: float = Field(description="the matcher's score, 0..1")
    evidence: dict[str, Any] = Field(description="the signals that matched")
    made_by: str
    made_at: datetime
    note: str
    broken_by: str | None
    broken_at: datetime | None
    broken_reason: str


class LinkPage(BaseModel):
    data: list[LinkOut]
    next_cursor: str | None


def _out(link: IdentityLink) -> LinkOut:
    return LinkOut(
        id=link.id, contact_id=link.left_id, resident_id=link.right_id, state=link.state.value,
        how=link.how.value, confidence=link.confidence, evidence=dict(link.evidence),
        made_by=link.made_by, made_at=link.made_at, note=link.note, broken_by=link.broken_by,
        broken_at=link.broken_at, broken_reason=link.broken_reason,
    )  # fmt: skip


@router.get(
    "/identities", response_model=LinkPage, responses=PROBLEMS,
    summary="Live identity links, oldest first",
)  # fmt: skip
async def list_identities(
    request: Request, key: Reader,
    state: Annotated[LinkState | None, Query(description="suggested, linked, rejected")] = None,
    cursor: Annotated[str | None, Query(max_length=64, description="a next_cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> LinkPage:  # fmt: skip
    found = await hub_of(request).identities.find(
        key.tenant, state=state, after=cursor, limit=limit + 1
    )
    more = len(found) > limit
    page = found[:limit]
    return LinkPage(data=[_out(x) for x in page], next_cursor=page[-1].id if more else None)


@router.get(
    "/identities/{id}", response_model=LinkOut, responses={**NOT_FOUND, **PROBLEMS},
    summary="One identity link",
)  # fmt: skip
async def get_identity(request: Request, key: Reader, id: str) -> LinkOut:
    try:
        link, _ = await hub_of(request).identities.get(key.tenant, id)
    except NotFound as exc:
        raise Problem(404, str(exc)) from None
    return _out(link)


@router.post(
    "/identities", status_code=201, response_model=LinkOut,
    responses={422: _problem("No such contact or resident"), **CONFLICT, **WRITE_PROBLEMS},
    summary="Link a contact and a resident as one person, by hand",
)  # fmt: skip
async def link_identities(
    request: Request, response: Response, key: Writer, body: LinkIn
) -> LinkOut:
    try:
        link = await hub_of(request).identities.link(
            key.tenant, body.contact_id, body.resident_id, by=f"api:{key.key_id}", note=body.note
        )
    except NotFound as exc:
        raise Problem(422, str(exc)) from None
    except (AlreadyExists, LinkRefused) as exc:
        raise Problem(409, str(exc)) from None
    response.headers["Location"] = f"/v1/identities/{link.id}"
    return _out(link)


@router.delete(
    "/identities/{id}", response_model=LinkOut,
    responses={**NOT_FOUND, **CONFLICT, **WRITE_PROBLEMS},
    summary="Unlink (a linked link) or reject (a suggestion); the pair is not linked again",
)  # fmt: skip
async def unlink_identities(
    request: Request, key: Writer, id: str,
    reason: Annotated[str, Query(min_length=1, max_length=1000, description="why (audit log)")],
) -> LinkOut:  # fmt: skip
    service = hub_of(request).identities
    actor = f"api:{key.key_id}"
    try:
        link, _ = await service.get(key.tenant, id)
        if link.state is LinkState.SUGGESTED:
            done = await service.reject(key.tenant, id, by=actor, reason=reason)
        else:
            done = await service.unlink(key.tenant, id, by=actor, reason=reason)
    except NotFound as exc:
        raise Problem(404, str(exc)) from None
    except (AlreadyExists, LinkRefused) as exc:
        raise Problem(409, str(exc)) from None
    return _out(done)
