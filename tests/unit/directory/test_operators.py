"""Console operators: scrypt hashes, sign-in that says the same thing whatever failed, sessions
that end on the hub's clock, at sign-out, with a new password and when the operator is disabled
or removed."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from cadastre.directory import OperatorService
from cadastre.directory import operators as ops
from cadastre.directory.operators import SIGN_IN_REFUSED, hash_password, verify_password
from cadastre.errors import AlreadyExists, AuthenticationError, ConfigurationError, NotFound
from cadastre.ports import Secret
from cadastre.testing import FakeClock, FakeStore

PASSWORD = "correct horse battery"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def service(clock: FakeClock) -> OperatorService:
    store = FakeStore(clock)
    await store.create_tenant("acme", "Acme")
    return OperatorService(store, clock, session_hours=12)


def test_a_hash_is_salted_scrypt_with_its_parameters() -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first != second  # a salt each
    scheme, n, r, p, salt, digest = first.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(ops._unb64(salt)) == 16
    assert ops._unb64(digest) == hashlib.scrypt(
        PASSWORD.encode(), salt=ops._unb64(salt), n=2**14, r=8, p=1, dklen=32
    )
    assert verify_password(PASSWORD, first)
    assert verify_password(PASSWORD, second)
    assert not verify_password(PASSWORD + " ", first)
    assert PASSWORD not in first


@pytest.mark.parametrize(
    "stored", ["", "sha256$abc", "scrypt$16384$8$1$c2FsdA", "scrypt$x$8$1$c2FsdA$aGFzaA",
               "scrypt$16384$8$1$!!!$aGFzaA"],
)  # fmt: skip
def test_a_stored_value_that_is_no_scrypt_hash_matches_nothing(stored: str) -> None:
    assert verify_password(PASSWORD, stored) is False


async def test_an_operator_is_stored_with_a_hash_never_the_password(
    service: OperatorService,
) -> None:
    added = await service.add("alice", Secret(PASSWORD), tenant="acme")
    assert added.tenant == "acme"
    assert PASSWORD not in repr(added)
    assert added.password_hash not in repr(added)
    stored = await service.get("alice")
    assert verify_password(PASSWORD, stored.password_hash)
    everyone = await service.add("root", Secret(PASSWORD))
    assert everyone.tenant is None


@pytest.mark.parametrize(
    ("username", "password", "tenant", "error", "says"),
    [
        ("bob", PASSWORD, "globex", NotFound, "tenant 'globex' does not exist"),
        ("", PASSWORD, None, ConfigurationError, "operator name"),
        ("bo b", PASSWORD, None, ConfigurationError, "operator name"),
        ("-bob", PASSWORD, None, ConfigurationError, "operator name"),
        ("b" * 65, PASSWORD, None, ConfigurationError, "operator name"),
        ("bob", "short", None, ConfigurationError, "at least 10 characters"),
        ("bob", "x" * 1025, None, ConfigurationError, "at most 1024"),
        ("bob", " padded password ", None, ConfigurationError, "spaces"),
        ("bob", "tab\tin the password", None, ConfigurationError, "control characters"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_stored(
    service: OperatorService, username: str, password: str, tenant: str | None,
    error: type[Exception], says: str,
) -> None:  # fmt: skip
    with pytest.raises(error, match=says):
        await service.add(username, Secret(password), tenant=tenant)
    assert await service.all() == []


async def test_a_username_is_taken_once(service: OperatorService) -> None:
    await service.add("alice", Secret(PASSWORD))
    with pytest.raises(AlreadyExists):
        await service.add("alice", Secret("another password"), tenant="acme")
    assert (await service.get("alice")).tenant is None


async def test_every_failed_sign_in_says_the_same(service: OperatorService) -> None:
    await service.add("alice", Secret(PASSWORD))
    await service.add("mallory", Secret(PASSWORD))
    await service.set_disabled("mallory", True)
    refusals = []
    for username, password in [
        ("alice", "wrong password!"),  # wrong password
        ("nobody", PASSWORD),  # no such operator
        ("mallory", PASSWORD),  # disabled
        ("bad name!", PASSWORD),  # not even a username
        ("alice", PASSWORD * 100),  # longer than any password
        ("alice", ""),
    ]:
        with pytest.raises(AuthenticationError) as caught:
            await service.sign_in(username, Secret(password))
        refusals.append(str(caught.value))
    assert set(refusals) == {SIGN_IN_REFUSED}


async def test_an_unknown_username_costs_one_scrypt_like_a_known_one(
    service: OperatorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Timing is not measured (wall time is no test); the work done is counted instead.
    await service.add("alice", Secret(PASSWORD))
    calls = []
    real = ops._scrypt

    def counted(*args, **kwargs):
        calls.append(args[2:5])
        return real(*args, **kwargs)

    monkeypatch.setattr(ops, "_scrypt", counted)
    ops._dummy_hash()  # made once per process; not part of what a sign-in costs afterwards
    for username in ["alice", "nobody", "bad name!"]:
        calls.clear()
        with pytest.raises(AuthenticationError):
            await service.sign_in(username, Secret("wrong password!"))
        assert calls == [(2**14, 8, 1)], username


async def test_a_session_lasts_its_hours_on_the_hub_clock(
    service: OperatorService, clock: FakeClock
) -> None:
    await service.add("alice", Secret(PASSWORD), tenant="acme")
    signed = await service.sign_in("alice", Secret(PASSWORD))
    assert signed.token not in repr(signed)
    assert signed.session.token_hash == hashlib.sha256(signed.token.encode()).hexdigest()
    assert signed.session.expires_at - signed.session.created_at == timedelta(hours=12)
    visitor = await service.visitor(signed.token)
    assert visitor is not None
    assert visitor.operator.username == "alice"
    assert visitor.sees("acme")
    assert not visitor.sees("globex")
    assert visitor.csrf == signed.session.csrf
    assert len(visitor.csrf) >= 32
    clock.advance(12 * 3600 - 1)
    assert await service.visitor(signed.token) is not None
    clock.advance(1)
    assert await service.visitor(signed.token) is None
    assert await service.prune() == 0  # the expired one was forgotten when it was seen


async def test_sessions_end_at_sign_out_new_password_disable_and_removal(
    service: OperatorService,
) -> None:
    await service.add("alice", Secret(PASSWORD))

    async def signed_in() -> str:
        return (await service.sign_in("alice", Secret(PASSWORD))).token

    token = await signed_in()
    other = await signed_in()
    await service.sign_out(token)
    assert await service.visitor(token) is None
    assert await service.visitor(other) is not None

    token = await signed_in()
    await service.set_password("alice", Secret("a brand new password"))
    assert await service.visitor(token) is None
    assert await service.visitor(other) is None
    with pytest.raises(AuthenticationError):
        await signed_in()
    await service.set_password("alice", Secret(PASSWORD))

    token = await signed_in()
    await service.set_disabled("alice", True)
    assert await service.visitor(token) is None
    await service.set_disabled("alice", False)

    token = await signed_in()
    await service.remove("alice")
    assert await service.visitor(token) is None
    with pytest.raises(NotFound):
        await service.remove("alice")


@pytest.mark.parametrize("token", [None, "", "x" * 500, "not-a-session"])
async def test_no_session_for_a_missing_or_made_up_token(
    service: OperatorService, token: str | None
) -> None:
    assert await service.visitor(token) is None


async def test_expired_sessions_are_pruned(service: OperatorService, clock: FakeClock) -> None:
    await service.add("alice", Secret(PASSWORD))
    await service.sign_in("alice", Secret(PASSWORD))
    clock.advance(3600)
    await service.sign_in("alice", Secret(PASSWORD))
    clock.advance(12 * 3600 - 1)
    assert await service.prune() == 1
