"""The console's locks: sign-in (the same answer whatever failed), the session cookie and its
expiry on the hub's clock, sign-out, CSRF on every POST (a refused one changes nothing), tenant
isolation (another tenant's things answer 404 and its names never show), and no secret on any
page."""

from __future__ import annotations

import re

import pytest

from cadastre.console import CONTENT_SECURITY_POLICY
from cadastre.ports import AlertState, ConflictState
from tests.integration.console.conftest import (
    A_CONNECTION,
    B_CONNECTION,
    CANARY_ID,
    CANARY_KEY,
    CANARY_SECRET,
    PAGES,
    PASSWORD,
    SECRET_FIELD_NAMES,
    A,
    B,
    World,
    alert_state,
    csrf,
    found,
    sign_in,
    signed_in,
    token_of,
)


async def open_items(world: World, tenant: str) -> set[str]:
    async with world.hub.store.unit_of_work(tenant, read_only=True) as uow:
        return {q.id for q in await uow.quarantine.open_items()}


@pytest.mark.parametrize("path", [*PAGES, f"/console/t/{A}/connections/{A_CONNECTION}"])
async def test_a_page_without_a_session_redirects_to_sign_in_and_back(
    world: World, path: str
) -> None:
    async with world.browser() as browser:
        answer = await browser.get(path)
        assert answer.status_code == 303
        login = answer.headers["location"]
        assert login.startswith("/console/login?next=")
        assert "nav" not in (await browser.get(login)).text  # nothing shown before sign-in
        form = await browser.get(login)
        done = await browser.post("/console/login", data={
            "csrf": token_of(form.text), "username": "root", "password": PASSWORD,
            "next": found(r'name="next" value="([^"]+)"', form.text),
        })  # fmt: skip
        assert (done.status_code, done.headers["location"]) == (303, path)
        assert (await browser.get(path)).status_code == 200


async def test_every_failed_sign_in_answers_the_same(world: World) -> None:
    await world.hub.operators.set_disabled("gary", True)
    async with world.browser() as browser:
        form = await browser.get("/console/login")
        token = token_of(form.text)
        answers = []
        for username, password in [
            ("root", "not the password"), ("nobody", PASSWORD), ("gary", PASSWORD),
            ("root", ""), ("root", PASSWORD * 50),
        ]:  # fmt: skip
            answer = await browser.post("/console/login", data={
                "csrf": token, "username": username, "password": password, "next": "/console/",
            })  # fmt: skip
            assert (
                "set-cookie" not in answer.headers
                or "cadastre_console=" not in (answer.headers["set-cookie"])
            )
            answers.append((answer.status_code, answer.text))
        assert len(set(answers)) == 1  # byte for byte, whatever was wrong
        status, text = answers[0]
        assert status == 200
        assert "wrong username or password" in text
        assert "nobody" not in text
        assert "gary" not in text
        assert (await browser.get("/console/")).status_code == 303  # nobody signed in


async def test_the_sign_in_form_refuses_a_post_no_page_of_ours_sent(world: World) -> None:
    async with world.browser() as browser:
        answer = await browser.post("/console/login", data={
            "csrf": "made-up", "username": "root", "password": PASSWORD,
        })  # fmt: skip
        assert answer.status_code == 403
        assert (await browser.get("/console/")).status_code == 303


async def test_the_session_cookie_is_strict_and_pages_are_locked_down(world: World) -> None:
    async with world.browser() as browser:
        answer = await sign_in(browser, "root")
        assert answer.status_code == 303
        cookie = next(
            c for c in answer.headers.get_list("set-cookie") if c.startswith("cadastre_console=")
        )
        parts = {p.strip().split("=")[0].lower() for p in cookie.split(";")}
        assert {"httponly", "path", "samesite", "max-age"} <= parts
        assert "Path=/console" in cookie
        assert "SameSite=strict" in cookie
        assert "Max-Age=43200" in cookie  # CADASTRE_CONSOLE_SESSION_HOURS, 12 by default
        assert "secure" not in parts  # the hub's public URL is http here
        page = await browser.get("/console/")
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "default-src 'self'" in CONTENT_SECURITY_POLICY
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-store"
        assert "<script>" not in page.text
        assert " style=" not in page.text
        assert re.findall(r'(?:src|href)="(https?:)?//', page.text) == []  # nothing from elsewhere
        script = await browser.get("/console/static/sparkline.js")
        assert script.status_code == 200
        assert "data-points" in script.text


async def test_an_https_hub_marks_the_cookie_secure(world: World) -> None:
    world.hub.settings = world.hub.settings.model_copy(update={"public_url": "https://hub.test"})
    async with world.browser("https://hub.test") as browser:
        answer = await sign_in(browser, "root")
        assert "Secure" in next(
            c for c in answer.headers.get_list("set-cookie") if c.startswith("cadastre_console=")
        )


async def test_a_session_ends_after_its_hours_on_the_hub_clock(world: World) -> None:
    async with signed_in(world, "anna") as browser:
        world.clock.advance(12 * 3600 - 60)
        assert (await browser.get("/console/")).status_code == 200
        world.clock.advance(60)
        answer = await browser.get("/console/alerts")
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/console/login")


async def test_signing_out_ends_the_session_even_for_a_copied_cookie(world: World) -> None:
    async with signed_in(world, "root") as browser:
        copied = dict(browser.cookies)
        refused = await browser.post("/console/logout", data={"csrf": "wrong"})
        assert refused.status_code == 403
        assert (await browser.get("/console/")).status_code == 200  # still signed in
        out = await browser.post("/console/logout", data={"csrf": await csrf(browser)})
        assert (out.status_code, out.headers["location"]) == (303, "/console/login")
    async with world.browser() as thief:
        thief.cookies.update(copied)
        assert (await thief.get("/console/")).status_code == 303


@pytest.mark.parametrize("next_", ["https://evil.example/", "//evil.example/x", "/v1/listings",
                                   "/console/../v1", "/console\\@evil.example"])  # fmt: skip
async def test_sign_in_returns_only_inside_the_console(world: World, next_: str) -> None:
    async with world.browser() as browser:
        answer = await sign_in(browser, "root", next=next_)
        assert answer.headers["location"] == "/console/"


async def test_a_post_without_the_csrf_token_changes_nothing(world: World) -> None:
    hub = world.hub
    item = world.ids[f"quarantine:{A}"]
    (world.folder / "test-mls.yaml").write_text(
        (world.folder / "test-mls.yaml").read_text()
        + "enums: {StandardStatus: {Sold-ish: Closed}}\n"
    )  # a replay now would resolve something
    before = await open_items(world, A)
    posts = [
        (f"/console/t/{A}/quarantine/replay", {"connection": A_CONNECTION}),
        (f"/console/t/{A}/quarantine/replay", {"connection": A_CONNECTION, "item": item}),
        (f"/console/t/{A}/alerts/al_a_subsystem/resolve", {}),
        (f"/console/t/{A}/conflicts/{world.ids['conflict']}/resolve",
         {"resolution": "take_incoming"}),
    ]  # fmt: skip
    async with signed_in(world, "root") as browser:
        real = await csrf(browser)
        for path, form in posts:
            for token in (None, "", "forged", real[:-1] + ("A" if real[-1] != "A" else "B")):
                data = form if token is None else {**form, "csrf": token}
                answer = await browser.post(path, data=data)
                assert answer.status_code == 403, (path, token)
                assert "token is missing or stale" in answer.text
        # another operator's token is no good either
        async with signed_in(world, "anna") as other:
            theirs = await csrf(other)
        answer = await browser.post(posts[0][0], data={**posts[0][1], "csrf": theirs})
        assert answer.status_code == 403
    assert await open_items(world, A) == before
    assert await alert_state(world, A, "al_a_subsystem") is AlertState.FIRING
    async with hub.store.unit_of_work(A, read_only=True) as uow:
        conflict = await uow.conflicts.get(world.ids["conflict"])
    assert conflict is not None
    assert conflict.state is ConflictState.OPEN


async def test_a_tenant_operator_sees_only_their_tenant(world: World) -> None:
    b_item = world.ids[f"quarantine:{B}"]
    async with signed_in(world, "anna") as anna:
        token = await csrf(anna)
        # Another tenant's things answer exactly as things that do not exist.
        for path in [
            f"/console/t/{B}/connections/{B_CONNECTION}",
            f"/console/t/{B}/quarantine/{b_item}",
            f"/console/t/{B}/alerts/al_b_subsystem",
            f"/console/t/{A}/quarantine/{b_item}",  # B's item under A's name
            f"/console/t/{A}/alerts/al_b_subsystem",
            f"/console/t/{A}/connections/{B_CONNECTION}",
            f"/console/?tenant={B}",
            f"/console/quarantine?tenant={B}",
            f"/console/t/nowhere/connections/{A_CONNECTION}",
        ]:
            answer = await anna.get(path)
            assert answer.status_code == 404, path
            assert B_CONNECTION not in answer.text
            assert b_item not in answer.text
        missing = await anna.get(f"/console/t/{A}/connections/no-such-connection")
        assert missing.status_code == 404
        elsewhere = await anna.get(f"/console/t/{B}/connections/{B_CONNECTION}")
        assert elsewhere.text == missing.text
        for path, form in [
            (f"/console/t/{B}/quarantine/replay", {"connection": B_CONNECTION}),
            (f"/console/t/{B}/alerts/al_b_subsystem/resolve", {}),
            (f"/console/t/{A}/quarantine/replay", {"connection": B_CONNECTION}),
            (f"/console/t/{A}/quarantine/replay", {"connection": A_CONNECTION, "item": b_item}),
            (f"/console/t/{A}/alerts/al_b_subsystem/resolve", {}),
        ]:
            answer = await anna.post(path, data={**form, "csrf": token})
            assert answer.status_code == 404, path
        # Nor do its names show anywhere on her pages.
        for path in PAGES:
            page = await anna.get(path)
            assert page.status_code == 200, path
            for name in (B, B_CONNECTION, "globex-login", "al_b_subsystem", b_item):
                assert name not in page.text, (path, name)
        fleet = await anna.get("/console/")
        assert A_CONNECTION in fleet.text
        assert 'data-testid="tenant-filter"' not in fleet.text  # nothing to choose from
    assert b_item in await open_items(world, B)
    assert await alert_state(world, B, "al_b_subsystem") is AlertState.FIRING


async def test_an_operator_of_every_tenant_sees_all_and_can_narrow(world: World) -> None:
    async with signed_in(world, "root") as root:
        fleet = await root.get("/console/")
        shown = r'data-testid="fleet-row" data-tenant="([^"]+)" data-connection="([^"]+)"'
        rows = re.findall(shown, fleet.text)
        assert sorted(rows) == [(A, A_CONNECTION), (B, B_CONNECTION)]
        assert 'data-testid="tenant-filter"' in fleet.text
        narrowed = await root.get("/console/", params={"tenant": B})
        assert B_CONNECTION in narrowed.text
        assert A_CONNECTION not in narrowed.text
        assert (await root.get("/console/", params={"tenant": "nowhere"})).status_code == 404
        page = await root.get(f"/console/t/{B}/connections/{B_CONNECTION}")
        assert page.status_code == 200


async def test_no_secret_reaches_any_page(world: World) -> None:
    async with signed_in(world, "root") as root:
        paths = [*PAGES, f"/console/t/{A}/connections/{A_CONNECTION}",
                 f"/console/t/{A}/quarantine/{world.ids[f'quarantine:{A}']}",
                 f"/console/t/{A}/alerts/al_a_subsystem"]  # fmt: skip
        seen = []
        for path in paths:
            answer = await root.get(path)
            assert answer.status_code == 200, path
            seen.append(answer.text)
        async with world.browser() as stranger:
            seen.append((await stranger.get("/console/login")).text)
        credentials = seen[PAGES.index("/console/credentials")]
        assert "austin-login" in credentials
        assert "spare-key" in credentials
        assert "oauth2_client_credentials" in credentials
        assert "active" in credentials
    every = "\n".join(seen)
    for canary in (CANARY_ID, CANARY_SECRET, CANARY_KEY, "demo-secret", PASSWORD):
        assert canary not in every  # ...never their secrets
    for name in SECRET_FIELD_NAMES:
        assert name not in every
    assert "scrypt$" not in every


async def test_unknown_pages_and_methods_answer_as_pages(world: World) -> None:
    async with signed_in(world, "root") as root:
        assert (await root.get("/console/nope")).status_code == 404
        wrong = await root.get(f"/console/t/{A}/quarantine/replay")
        assert wrong.status_code in (404, 405)
        assert wrong.headers["content-type"].startswith("text/html")
        bad = await root.get("/console/", params={"tenant": "x" * 100})
        assert bad.status_code == 422
        assert bad.headers["content-type"].startswith("text/html")
