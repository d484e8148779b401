"""The Consul stand-in answers as Consul's HTTP API documentation says it does.

Goal: the Consul backend's tests mean something only if the stand-in behaves
like Consul where muster depends on it: session TTL limits and invalidation,
lock acquisition, blocking queries and their index, and state kept over a
restart. Each test names the documented behaviour it checks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from tests.stores.consul import ConsulStandIn

pytestmark = pytest.mark.integration


class Client:
    """Bare HTTP calls to the stand-in, nothing interpreted."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self.session = session

    async def call(
        self,
        method: str,
        path: str,
        body: object = None,
        data: bytes | None = None,
        **params: str,
    ) -> tuple[int, Any, dict[str, str]]:
        payload = json.dumps(body).encode() if body is not None else data
        async with self.session.request(
            method, f"{self.base_url}{path}", data=payload, params=params
        ) as response:
            text = await response.text()
            try:
                decoded: Any = json.loads(text) if text else None
            except ValueError:
                decoded = text
            return response.status, decoded, dict(response.headers)

    async def session_create(self, **body: object) -> str:
        status, answer, _ = await self.call("PUT", "/session/create", body)
        assert status == 200, answer
        return str(answer["ID"])

    async def keys(self, prefix: str) -> dict[str, Any]:
        status, answer, _ = await self.call("GET", f"/kv/{prefix}", recurse="")
        return {item["Key"]: item for item in answer} if status == 200 else {}


@pytest.fixture(scope="module")
def standin() -> Iterator[ConsulStandIn]:
    store = ConsulStandIn(min_session_ttl="500ms")
    store.start()
    yield store
    store.close()


@pytest.fixture
async def client(standin: ConsulStandIn) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(standin.http_url, session)


def index_of(headers: dict[str, str]) -> int:
    return int(headers["X-Consul-Index"])


@pytest.mark.parametrize("ttl", ["100ms", "86401s"])
async def test_session_ttl_outside_the_allowed_range_is_refused_as_consul_does(
    client: Client, ttl: str
) -> None:
    # Consul answers 500 here, naming the range (hashicorp/consul#1670).
    status, answer, _ = await client.call("PUT", "/session/create", {"TTL": ttl})

    assert status == 500
    assert "Invalid Session TTL" in answer
    assert "must be between [500ms=24h0m0s]" in answer


async def test_minimum_session_ttl_is_consuls_10s_by_default() -> None:
    store = ConsulStandIn(min_session_ttl="10s")
    try:
        store.start()
        async with aiohttp.ClientSession() as session:
            client = Client(store.http_url, session)
            refused, _, _ = await client.call("PUT", "/session/create", {"TTL": "9s"})
            accepted, _, _ = await client.call("PUT", "/session/create", {"TTL": "10s"})
    finally:
        store.close()

    assert (refused, accepted) == (500, 200)


async def test_session_keeps_its_settings_whatever_the_case_of_the_fields(
    client: Client,
) -> None:
    # py-consul sends lower-case field names; Go's JSON decoder takes any case.
    first = await client.session_create(
        name="x", behavior="delete", ttl="30s", lockdelay="1ms"
    )
    second = await client.session_create(LockDelay=5)

    _, (info,), _ = await client.call("GET", f"/session/info/{first}")
    _, (other,), _ = await client.call("GET", f"/session/info/{second}")
    _, listed, _ = await client.call("GET", "/session/list")

    assert (info["Name"], info["Behavior"], info["TTL"]) == ("x", "delete", "30s")
    assert info["LockDelay"] == 1_000_000  # nanoseconds
    assert other["LockDelay"] == 5_000_000_000  # a small number means seconds
    assert other["Behavior"] == "release"
    assert {first, second} <= {s["ID"] for s in listed}


async def test_renew_answers_the_session_or_404_when_unknown(client: Client) -> None:
    session = await client.session_create(TTL="10s")

    status, answer, _ = await client.call("PUT", f"/session/renew/{session}")
    missing, _, _ = await client.call(
        "PUT", "/session/renew/00000000-0000-0000-0000-000000000000"
    )

    assert status == 200
    assert answer[0]["ID"] == session
    assert missing == 404


async def test_unrenewed_session_is_invalidated_at_twice_its_ttl_deleting_its_keys(
    client: Client,
) -> None:
    created = time.monotonic()
    session = await client.session_create(TTL="1s", Behavior="delete")
    await client.call("PUT", "/kv/expiry/a?acquire=" + session, data=b"1")

    await asyncio.sleep(max(0.0, created + 1.4 - time.monotonic()))
    still_there = await client.keys("expiry/")  # past the TTL, short of twice it
    await asyncio.sleep(max(0.0, created + 2.3 - time.monotonic()))
    later = await client.keys("expiry/")
    status, info, _ = await client.call("GET", f"/session/info/{session}")

    assert list(still_there) == ["expiry/a"]
    assert later == {}
    assert (status, info) == (200, [])


async def test_renewing_keeps_a_session_alive_past_twice_its_ttl(
    client: Client,
) -> None:
    session = await client.session_create(TTL="500ms", Behavior="delete")
    await client.call("PUT", f"/kv/renewed/a?acquire={session}", data=b"1")

    for _ in range(6):  # 1.5 s, three times the TTL
        await asyncio.sleep(0.25)
        await client.call("PUT", f"/session/renew/{session}")

    assert list(await client.keys("renewed/")) == ["renewed/a"]


async def test_release_behavior_frees_the_keys_instead_of_deleting_them(
    client: Client,
) -> None:
    session = await client.session_create(Behavior="release", LockDelay="0s")
    await client.call("PUT", f"/kv/release/a?acquire={session}", data=b"v")

    await client.call("PUT", f"/session/destroy/{session}")
    entry = (await client.keys("release/"))["release/a"]

    assert "Session" not in entry
    assert base64.b64decode(entry["Value"]) == b"v"


async def test_acquire_succeeds_for_the_holder_only(client: Client) -> None:
    holder = await client.session_create(LockDelay="0s")
    other = await client.session_create(LockDelay="0s")

    _, first, _ = await client.call("PUT", f"/kv/lock/a?acquire={holder}", data=b"1")
    _, again, _ = await client.call("PUT", f"/kv/lock/a?acquire={holder}", data=b"2")
    _, taken, _ = await client.call("PUT", f"/kv/lock/a?acquire={other}", data=b"3")
    status, _, _ = await client.call(
        "PUT", "/kv/lock/b?acquire=00000000-0000-0000-0000-000000000000"
    )
    entry = (await client.keys("lock/"))["lock/a"]

    assert (first, again, taken) == (True, True, False)
    assert status == 500  # Consul: "Invalid session"
    assert (entry["Session"], entry["LockIndex"]) == (holder, 1)
    assert base64.b64decode(entry["Value"]) == b"2"


async def test_lock_delay_holds_back_a_key_its_session_lost(client: Client) -> None:
    first = await client.session_create(LockDelay="1s", Behavior="delete")
    second = await client.session_create()
    await client.call("PUT", f"/kv/delay/a?acquire={first}", data=b"1")

    await client.call("PUT", f"/session/destroy/{first}")
    _, early, _ = await client.call("PUT", f"/kv/delay/a?acquire={second}")
    await asyncio.sleep(1.1)
    _, late, _ = await client.call("PUT", f"/kv/delay/a?acquire={second}")

    assert (early, late) == (False, True)


async def test_plain_put_keeps_the_lock_holder(client: Client) -> None:
    session = await client.session_create()
    await client.call("PUT", f"/kv/plain/a?acquire={session}")

    _, done, _ = await client.call("PUT", "/kv/plain/a", data=b"addr", flags="7")
    entry = (await client.keys("plain/"))["plain/a"]

    assert done is True
    assert (entry["Session"], entry["Flags"]) == (session, 7)


async def test_read_of_a_missing_prefix_is_404_with_an_index(client: Client) -> None:
    status, body, headers = await client.call("GET", "/kv/nothing/here/", recurse="")

    assert status == 404
    assert body is None
    assert index_of(headers) >= 1


async def test_empty_value_reads_as_null_and_others_as_base64(client: Client) -> None:
    await client.call("PUT", "/kv/values/empty")
    await client.call("PUT", "/kv/values/full", data=b"10.0.0.1:2375")

    entries = await client.keys("values/")

    assert entries["values/empty"]["Value"] is None
    assert (
        entries["values/full"]["Value"] == base64.b64encode(b"10.0.0.1:2375").decode()
    )


async def test_keys_listing_stops_at_the_separator(client: Client) -> None:
    for key in ("sep/a/1", "sep/a/2", "sep/b"):
        await client.call("PUT", f"/kv/{key}", data=b"x")

    _, names, _ = await client.call("GET", "/kv/sep/", keys="", separator="/")

    assert names == ["sep/a/", "sep/b"]


async def test_blocking_read_returns_as_soon_as_the_prefix_changes(
    client: Client,
) -> None:
    _, _, headers = await client.call("GET", "/kv/block/", recurse="")
    index = str(index_of(headers))

    waiting = asyncio.ensure_future(
        client.call("GET", "/kv/block/", recurse="", index=index, wait="10s")
    )
    await asyncio.sleep(0.3)
    assert not waiting.done()
    started = time.monotonic()
    await client.call("PUT", "/kv/block/a", data=b"1")
    status, answer, after = await asyncio.wait_for(waiting, 5)

    assert time.monotonic() - started < 1.0
    assert status == 200
    assert [item["Key"] for item in answer] == ["block/a"]
    assert index_of(after) > int(index)


async def test_blocking_read_answers_at_the_end_of_wait_with_the_same_index(
    client: Client,
) -> None:
    await client.call("PUT", "/kv/quiet/a", data=b"1")
    _, _, headers = await client.call("GET", "/kv/quiet/", recurse="")
    index = str(index_of(headers))

    started = time.monotonic()
    await client.call("PUT", "/kv/elsewhere/a", data=b"1")  # not under the prefix
    status, _, after = await client.call(
        "GET", "/kv/quiet/", recurse="", index=index, wait="500ms"
    )
    waited = time.monotonic() - started

    assert status == 200
    assert index_of(after) == int(index)
    # The wait, plus at most the wait/16 jitter Consul adds, plus slack.
    assert 0.45 <= waited < 1.5


async def test_index_grows_with_each_change_and_not_for_a_put_that_changes_nothing(
    client: Client,
) -> None:
    seen = []
    for value in (b"1", b"2", b"2", b"3"):
        await client.call("PUT", "/kv/grow/a", data=value)
        _, _, headers = await client.call("GET", "/kv/grow/", recurse="")
        seen.append(index_of(headers))
    await client.call("DELETE", "/kv/grow/a")
    _, _, headers = await client.call("GET", "/kv/grow/", recurse="")

    assert seen[0] < seen[1] == seen[2] < seen[3]
    # A tombstone moves the prefix's index even though no key is left.
    assert index_of(headers) > seen[3]


async def test_delete_recurse_and_check_and_set(client: Client) -> None:
    for key in ("del/a", "del/b", "keep/a"):
        await client.call("PUT", f"/kv/{key}", data=b"x")
    modify = (await client.keys("keep/"))["keep/a"]["ModifyIndex"]

    await client.call("DELETE", "/kv/del/", recurse="")
    _, wrong, _ = await client.call("DELETE", "/kv/keep/a", cas=str(modify + 100))
    _, right, _ = await client.call("DELETE", "/kv/keep/a", cas=str(modify))
    _, create_only, _ = await client.call("PUT", "/kv/keep/b", data=b"x", cas="0")
    _, again, _ = await client.call("PUT", "/kv/keep/b", data=b"y", cas="0")

    assert await client.keys("del/") == {}
    assert (wrong, right, create_only, again) == (False, True, True, False)


async def test_restart_keeps_keys_and_sessions_and_restarts_their_timers() -> None:
    store = ConsulStandIn(min_session_ttl="500ms")
    try:
        store.start()
        async with aiohttp.ClientSession() as session:
            client = Client(store.http_url, session)
            held = await client.session_create(TTL="1s", Behavior="delete")
            await client.call("PUT", f"/kv/kept/a?acquire={held}", data=b"1")
            _, _, before = await client.call("GET", "/kv/kept/", recurse="")

            store.stop()
            store.start()
            renewed, _, _ = await client.call("PUT", f"/session/renew/{held}")
            entries = await client.keys("kept/")
            _, _, after = await client.call("GET", "/kv/kept/", recurse="")
            await client.call("PUT", "/kv/kept/b", data=b"2")
            _, _, moved = await client.call("GET", "/kv/kept/", recurse="")
    finally:
        store.close()

    assert renewed == 200
    assert entries["kept/a"]["Session"] == held
    assert index_of(after) == index_of(before)
    assert index_of(moved) > index_of(before)
