"""Doubles for the gateway tests: a clock whose sleeps pass at once, a vault credential with
canary values, and a token endpoint."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest

from cadastre.testing import FakeClock
from cadastre.testing.vault import VaultKit

if TYPE_CHECKING:
    from cadastre.gateway import VaultAuth
    from cadastre.ports import Clock

CANARY_SECRET = "canary-client-secret-5f0c2e"
CANARY_TOKEN = "canary-access-token-9ab31d"
CLIENT_ID = "demo-client"
TOKEN_URL = "https://vendor.test/oauth/token"


class SteppingClock(FakeClock):
    """A FakeClock whose ``sleep`` moves fake time forward by itself (and records how long), so a
    call that backs off runs to the end without a driver; nothing waits in real time."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)


class Ceiling(random.Random):
    """Jitter that always draws the top of its range."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def client_credentials(
    clock: Clock, *, client_secret: str = CANARY_SECRET, token_url: str = TOKEN_URL, **meta: Any
) -> VaultAuth:
    """A client-credentials login sealed in a fresh in-memory vault (tenant "acme", credential
    "mls"), ready for ``Gateway(..., auth=...)``."""
    return await VaultKit(clock).client_credentials(
        "acme", "mls", CLIENT_ID, client_secret, token_url=token_url, **meta
    )


@dataclass
class TokenEndpoint:
    """Answers token requests (``answers`` in order, then the last one again; None: issue a
    token) and API calls, which succeed only with the current token."""

    answers: list[httpx.Response | None] = field(default_factory=list)
    token_requests: list[httpx.Request] = field(default_factory=list)
    token_bodies: list[bytes] = field(default_factory=list)
    api_auth: list[str | None] = field(default_factory=list)
    issued: int = 0
    expires_in: int | None = 3600
    api: Callable[[httpx.Request], httpx.Response] | None = None

    def current(self) -> str:
        return f"{CANARY_TOKEN}-{self.issued}"

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # let concurrent callers interleave, as on a real socket
        if request.url.path == "/oauth/token":
            self.token_requests.append(request)
            self.token_bodies.append(await request.aread())
            if self.answers:
                answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
                if answer is not None:
                    return answer
            self.issued += 1
            body: dict[str, object] = {"access_token": self.current(), "token_type": "bearer"}
            if self.expires_in is not None:
                body["expires_in"] = self.expires_in
            return httpx.Response(200, content=orjson.dumps(body))
        self.api_auth.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != f"Bearer {self.current()}":
            return httpx.Response(401, json={"error": "invalid_token"})
        if self.api is not None:
            return self.api(request)
        return httpx.Response(200, json={"ok": True})


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()
