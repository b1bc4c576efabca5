"""A small loopback vendor that takes writes, for the write-back kill trials until the vendor
simulators land: ``/{mode}/objects`` where mode is ``key`` (a repeated ``Idempotency-Key``
replays the first answer, QuickBooks' requestid), ``natural`` (a create upserts by ``Email``,
HubSpot's upsert) or ``none`` (neither, Buildium). Every create is counted per logical write
(``X-Write-Key``); ``GET /admin/stats`` reports the counts."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse


def vendor_app() -> FastAPI:
    app = FastAPI()
    objects: dict[str, dict[str, Any]] = {}
    creates: Counter[str] = Counter()
    replies: dict[str, dict[str, Any]] = {}
    counter = [1000]

    def show(id: str) -> dict[str, Any]:
        found = objects[id]
        return {"id": id, "version": str(found["version"]), "fields": found["fields"]}

    @app.post("/{mode}/objects")
    async def create(
        mode: str, request: Request, x_write_key: str = Header(""),
        idempotency_key: str | None = Header(None),
    ) -> JSONResponse:  # fmt: skip
        body = await request.json()
        fields = body["fields"]
        if mode == "key" and idempotency_key and idempotency_key in replies:
            return JSONResponse({**replies[idempotency_key], "replayed": True})
        if mode == "natural":
            for id, found in objects.items():
                if found["fields"].get("Email") == fields.get("Email"):
                    found["fields"].update(fields)
                    found["version"] += 1
                    return JSONResponse(show(id))
        counter[0] += 1
        id = str(counter[0])
        objects[id] = {"fields": dict(fields), "version": 1}
        creates[x_write_key] += 1
        answer = show(id)
        if mode == "key" and idempotency_key:
            replies[idempotency_key] = answer
        return JSONResponse(answer, 201)

    @app.put("/{mode}/objects/{id}")
    async def update(mode: str, id: str, request: Request) -> JSONResponse:
        if id not in objects:
            return JSONResponse({"error": "not found"}, 404)
        body = await request.json()
        objects[id]["fields"].update(body["fields"])
        objects[id]["version"] += 1
        return JSONResponse(show(id))

    @app.get("/{mode}/objects/{id}")
    async def get(mode: str, id: str) -> JSONResponse:
        if id not in objects:
            return JSONResponse({"error": "not found"}, 404)
        return JSONResponse(show(id))

    @app.get("/{mode}/objects")
    async def search(mode: str, Email: str) -> JSONResponse:  # noqa: N803 - the vendor's name
        return JSONResponse(
            [show(i) for i, o in objects.items() if o["fields"].get("Email") == Email]
        )

    @app.get("/admin/stats")
    async def stats() -> JSONResponse:
        return JSONResponse({"creates": dict(creates), "objects": len(objects)})

    return app
