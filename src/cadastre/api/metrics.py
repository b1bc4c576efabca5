"""``GET /metrics``: the hub's Prometheus metrics (``hub.metrics.registry``), for a scraper.

Who may read them: a client on the loopback interface (a Prometheus agent or sidecar on the same
machine) without anything more; any other client only with ``Authorization: Bearer <token>``
equal to ``CADASTRE_METRICS_TOKEN`` (401 with a ``WWW-Authenticate`` challenge otherwise), and,
with no token configured, nobody else at all (403). Metric labels name tenants, connections and
vendors: not secrets, but not the world's business either.

The client address is the one uvicorn reports. Behind a reverse proxy on the same machine every
request would come from loopback, so the proxy must send ``X-Forwarded-For`` (uvicorn trusts it
from 127.0.0.1 by default) or not forward ``/metrics`` at all (``docs/operations.md``).

The token is compared in constant time (``hmac.compare_digest``) and never echoed. The body is
the text exposition format, or OpenMetrics when the scraper's ``Accept`` asks for it
(``prometheus_client.exposition.choose_encoder``).
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request, Response
from prometheus_client.exposition import choose_encoder
from pydantic import SecretStr

from cadastre.api.auth import hub_of
from cadastre.api.problems import PROBLEM_JSON, Problem, ProblemDetails

router = APIRouter(tags=["operations"])

_SCHEME = "bearer "


_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition"},
    401: {"model": ProblemDetails, "content": {PROBLEM_JSON: {}},
          "description": "not loopback, and no valid metrics token"},
    403: {"model": ProblemDetails, "content": {PROBLEM_JSON: {}},
          "description": "not loopback, and no metrics token is configured"},
}  # fmt: skip


@router.get(
    "/metrics",
    summary="Prometheus metrics (loopback, or a bearer token)",
    response_class=Response,
    responses=_RESPONSES,
)
async def metrics(request: Request) -> Response:
    hub = hub_of(request)
    if not _loopback(request):
        _check_token(request, hub.settings.metrics_token)
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(hub.metrics.registry), headers={"Content-Type": content_type})


def _loopback(request: Request) -> bool:
    if request.client is None:
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:  # a Unix socket's peer, a test client's "testclient": not loopback
        return False


def _check_token(request: Request, token: SecretStr | None) -> None:
    if token is None or not token.get_secret_value():
        raise Problem(403, "/metrics answers loopback clients only; set CADASTRE_METRICS_TOKEN "
                      "to let others in with a bearer token")  # fmt: skip
    header = request.headers.get("authorization", "")
    presented = header[len(_SCHEME) :] if header[: len(_SCHEME)].lower() == _SCHEME else ""
    expected = token.get_secret_value().encode()
    if not hmac.compare_digest(presented.strip().encode(), expected):
        raise Problem(
            401, "a valid metrics token is required: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": 'Bearer realm="cadastre-metrics"'},
        )  # fmt: skip
