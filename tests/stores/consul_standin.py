"""A stand-in for one Consul server's HTTP API: key/value, sessions, blocking reads.

No Consul server can be installed on the test machines (Debian, PyPI and npm ship
only clients), so the Consul backend is tested against this program, written from
Consul's HTTP API documentation (the ``/kv`` and ``/session`` pages and "Blocking
Queries") and from the behaviour Consul's users report. What it does, as Consul:

- sessions: ``TTL`` from the server's minimum (``--min-session-ttl``, Consul's
  ``session_ttl_min``, 10s by default) to 24h, else a 500 naming the range; a
  session not renewed is invalidated **exactly twice its TTL** after its last
  renewal (Consul's documented worst case, and what its server timer waits); its
  keys are then deleted (``Behavior: delete``) or released (``release``), and
  the lock-delay (at most 60s) keeps them from being acquired again meanwhile;
- keys: ``acquire``, ``release``, ``cas`` and ``flags`` on a PUT, ``recurse``,
  ``keys``, ``separator`` and ``raw`` on a GET; a PUT that changes nothing does
  not move the index; deletes leave tombstones so a prefix's index still moves;
- reads: ``X-Consul-Index`` (never below 1), ``X-Consul-KnownLeader``,
  ``X-Consul-LastContact``; with ``?index=N`` a read waits until the index passes
  N or ``wait`` runs out (5m by default, at most 10m, plus up to wait/16 jitter);
- a restart keeps keys and sessions (state is written to ``--data-dir`` on every
  change) and gives each session a fresh timer, as a new Consul leader does.

Run as ``python -m tests.stores.consul_standin --port N --data-dir D``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from muster.durations import format_duration, parse_duration
from muster.errors import InvalidDurationError

NODE = "standin"
MAX_SESSION_TTL_SECONDS = 86400.0
MAX_LOCK_DELAY_SECONDS = 60.0
#: Consul reads a LockDelay under this many nanoseconds as seconds.
LOCK_DELAY_SECONDS_THRESHOLD = 1000
MAX_VALUE_BYTES = 512 * 1024
DEFAULT_WAIT_SECONDS = 300.0
MAX_WAIT_SECONDS = 600.0
#: Consul's session timers wait this many TTLs; its docs say "up to double".
TTL_MULTIPLIER = 2


@dataclass
class KVEntry:
    """One key as Consul stores it."""

    key: str
    value: str | None  # base64, as Consul prints it; None for an empty value
    flags: int = 0
    session: str = ""
    create_index: int = 0
    modify_index: int = 0
    lock_index: int = 0

    def as_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "LockIndex": self.lock_index,
            "Key": self.key,
            "Flags": self.flags,
            "Value": self.value,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }
        if self.session:
            answer["Session"] = self.session
        return answer


@dataclass
class SessionRecord:
    """One session as Consul stores it."""

    id: str
    name: str
    behavior: str
    ttl: str
    lock_delay_ns: int
    node_checks: list[str] = field(default_factory=list)
    create_index: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Name": self.name,
            "Node": NODE,
            "LockDelay": self.lock_delay_ns,
            "Behavior": self.behavior,
            "TTL": self.ttl,
            "NodeChecks": self.node_checks,
            "ServiceChecks": None,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.create_index,
        }


class ConsulError(Exception):
    """A request Consul refuses: its status and its plain-text reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class State:
    """Keys, sessions and indexes, saved to a JSON file after every change."""

    def __init__(self, path: Path, min_ttl_seconds: float) -> None:
        self.path = path
        self.min_ttl_seconds = min_ttl_seconds
        self.index = 1
        self.kv_index = 0
        self.session_index = 0
        self.kv: dict[str, KVEntry] = {}
        self.tombstones: dict[str, int] = {}
        self.sessions: dict[str, SessionRecord] = {}
        self.lock_delays: dict[str, float] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.changed = asyncio.Event()
        if path.exists():
            saved = json.loads(path.read_text())
            self.index, self.kv_index = saved["index"], saved["kv_index"]
            self.session_index = saved["session_index"]
            self.kv = {k: KVEntry(**v) for k, v in saved["kv"].items()}
            self.tombstones = saved["tombstones"]
            self.sessions = {
                k: SessionRecord(**v) for k, v in saved["sessions"].items()
            }
        for session in self.sessions.values():
            # A new Consul leader restarts every session's timer from scratch.
            self.restart_timer(session)

    def next_index(self) -> int:
        self.index += 1
        return self.index

    def commit(self) -> None:
        """Save the state and wake every blocking read."""
        saved = {
            "index": self.index,
            "kv_index": self.kv_index,
            "session_index": self.session_index,
            "kv": {k: asdict(v) for k, v in self.kv.items()},
            "tombstones": self.tombstones,
            "sessions": {k: asdict(v) for k, v in self.sessions.items()},
        }
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(json.dumps(saved))
        os.replace(scratch, self.path)
        self.changed.set()
        self.changed = asyncio.Event()

    # Sessions

    def create_session(self, body: dict[str, Any]) -> str:
        fields = {key.lower(): value for key, value in body.items()}
        behavior = fields.get("behavior") or "release"
        if behavior not in ("release", "delete"):
            raise ConsulError(500, f"Invalid Behavior setting '{behavior}'")
        ttl = str(fields.get("ttl") or "")
        if ttl:
            seconds = _duration(ttl, f"Session TTL '{ttl}' invalid")
            if (
                seconds
                and not self.min_ttl_seconds <= seconds <= MAX_SESSION_TTL_SECONDS
            ):
                raise ConsulError(
                    500,
                    f"Invalid Session TTL '{round(seconds * 1e9)}', must be between "
                    f"[{format_duration(self.min_ttl_seconds)}="
                    f"{_go_hours(MAX_SESSION_TTL_SECONDS)}]",
                )
        node = fields.get("node") or NODE
        if node != NODE:
            raise ConsulError(500, f"Missing node registration: node '{node}'")
        checks = fields.get("nodechecks", fields.get("checks", ["serfHealth"])) or []
        for check in checks:
            if check != "serfHealth":
                raise ConsulError(500, f"Missing check '{check}' registration")

        index = self.next_index()
        session = SessionRecord(
            id=str(uuid.uuid4()),
            name=str(fields.get("name") or ""),
            behavior=behavior,
            ttl=ttl,
            lock_delay_ns=_lock_delay_ns(fields.get("lockdelay", "15s")),
            node_checks=list(checks),
            create_index=index,
        )
        self.sessions[session.id] = session
        self.session_index = index
        self.restart_timer(session)
        self.commit()
        return session.id

    def restart_timer(self, session: SessionRecord) -> None:
        old = self.timers.pop(session.id, None)
        if old is not None:
            old.cancel()
        seconds = _duration(session.ttl, "bad TTL") if session.ttl else 0.0
        if seconds:
            self.timers[session.id] = asyncio.get_running_loop().call_later(
                seconds * TTL_MULTIPLIER, self.destroy_session, session.id
            )

    def destroy_session(self, session_id: str) -> None:
        """Invalidate a session: destroyed, or its TTL ran out."""
        session = self.sessions.pop(session_id, None)
        timer = self.timers.pop(session_id, None)
        if timer is not None:
            timer.cancel()
        if session is None:
            return

        index = self.next_index()
        delay = min(session.lock_delay_ns / 1e9, MAX_LOCK_DELAY_SECONDS)
        for entry in [e for e in self.kv.values() if e.session == session_id]:
            if session.behavior == "delete":
                self._remove(entry.key, index)
            else:
                entry.session, entry.modify_index = "", index
                self.kv_index = index
            if delay > 0:
                self.lock_delays[entry.key] = time.monotonic() + delay
        self.session_index = index
        self.commit()

    # Keys

    def put(self, key: str, value: str | None, query: dict[str, str]) -> bool:
        flags = _uint(query["flags"], "flags") if "flags" in query else None
        existing = self.kv.get(key)
        holder = existing.session if existing else ""
        lock_index = existing.lock_index if existing else 0

        if "release" in query:
            if existing is None or existing.session != query["release"]:
                return False
            holder = ""
        elif "acquire" in query:
            session = query["acquire"]
            if not session:
                raise ConsulError(500, "Missing session")
            if session not in self.sessions:
                raise ConsulError(500, f'Invalid session "{session}"')
            if self.lock_delays.get(key, 0.0) > time.monotonic():
                return False
            if holder and holder != session:
                return False
            if holder != session:
                lock_index += 1
            holder = session
        elif "cas" in query:
            cas = _uint(query["cas"], "cas")
            current = existing.modify_index if existing else 0
            if (existing is None and cas != 0) or (existing and cas != current):
                return False

        new = KVEntry(
            key,
            value,
            flags if flags is not None else 0,
            holder,
            existing.create_index if existing else 0,
            existing.modify_index if existing else 0,
            lock_index,
        )
        if existing is not None and new == existing:
            return True  # nothing changes, so the index stays where it is
        index = self.next_index()
        new.create_index = new.create_index or index
        new.modify_index = index
        self.kv[key] = new
        self.tombstones.pop(key, None)
        self.kv_index = index
        self.commit()
        return True

    def delete(self, key: str, query: dict[str, str]) -> bool:
        if "recurse" in query:
            doomed = [k for k in self.kv if k.startswith(key)]
        elif "cas" in query:
            entry = self.kv.get(key)
            cas = _uint(query["cas"], "cas")
            if entry is None or entry.modify_index != cas:
                return entry is None
            doomed = [key]
        else:
            doomed = [key] if key in self.kv else []
        if doomed:
            index = self.next_index()
            for doomed_key in doomed:
                self._remove(doomed_key, index)
            self.commit()
        return True

    def _remove(self, key: str, index: int) -> None:
        del self.kv[key]
        self.tombstones[key] = index
        self.kv_index = index

    def entries(self, prefix: str, recurse: bool) -> tuple[int, list[KVEntry]]:
        """The entries a read returns, and the index it reports (as Consul)."""
        if not recurse:
            entry = self.kv.get(prefix)
            if entry is not None:
                return entry.modify_index, [entry]
            return max(self.kv_index, 1), []
        found = sorted(
            (e for k, e in self.kv.items() if k.startswith(prefix)),
            key=lambda e: e.key,
        )
        index = max([e.modify_index for e in found], default=0)
        graves = [i for k, i in self.tombstones.items() if k.startswith(prefix)]
        index = max(index, *graves) if graves else index
        if not prefix or not index:
            index = self.kv_index
        return max(index, 1), found


def _duration(text: str, problem: str) -> float:
    try:
        return parse_duration(text)
    except InvalidDurationError as exc:
        raise ConsulError(500, f"{problem}: {exc}") from None


def _go_hours(seconds: float) -> str:
    # Go prints 24 hours as "24h0m0s"; muster's formatter drops the zero parts.
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes}m{secs}s"


def _lock_delay_ns(raw: object) -> int:
    # Consul takes a duration string or a number; small values mean seconds.
    if isinstance(raw, str):
        nanoseconds = round(_duration(raw, "Request decode failed") * 1e9)
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        nanoseconds = int(raw)
    else:
        raise ConsulError(400, f"Request decode failed: bad LockDelay {raw!r}")
    if nanoseconds < LOCK_DELAY_SECONDS_THRESHOLD:
        nanoseconds *= 1_000_000_000
    return nanoseconds


def _uint(text: str, name: str) -> int:
    if not text.isdigit():
        raise ConsulError(400, f"Invalid {name} value: {text!r}")
    return int(text)


class Server:
    """The HTTP routes, over one :class:`State`."""

    def __init__(self, state: State) -> None:
        self.state = state
        app = web.Application(middlewares=[self.errors])
        app.add_routes(
            [
                web.put("/v1/session/create", self.session_create),
                web.put("/v1/session/destroy/{id}", self.session_destroy),
                web.put("/v1/session/renew/{id}", self.session_renew),
                web.get("/v1/session/info/{id}", self.session_info),
                web.get("/v1/session/list", self.session_list),
                web.get("/v1/session/node/{node}", self.session_list),
                web.get("/v1/kv/{key:.*}", self.kv_get),
                web.put("/v1/kv/{key:.*}", self.kv_put),
                web.delete("/v1/kv/{key:.*}", self.kv_delete),
                web.get("/v1/status/leader", self.leader),
                web.get("/v1/agent/self", self.agent_self),
            ]
        )
        self.app = app

    @web.middleware
    async def errors(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except ConsulError as exc:
            return web.Response(status=exc.status, text=str(exc))
        return response

    async def block(self, request: web.Request, current: Callable[[], int]) -> int:
        """Hold a read with ``?index=N`` until its index passes N or time runs out."""
        query = request.query
        wanted = _uint(query["index"], "index") if query.get("index") else 0
        if wanted == 0:
            return current()
        wait = DEFAULT_WAIT_SECONDS
        if query.get("wait"):
            wait = min(_duration(query["wait"], "Invalid wait time"), MAX_WAIT_SECONDS)
        # Consul spreads out the wake-ups of many waiting clients.
        deadline = time.monotonic() + wait + random.uniform(0, wait / 16)
        while current() <= wanted:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self.state.changed.wait(), remaining)
            except TimeoutError:
                break
        return current()

    def answer(self, body: object, index: int, status: int = 200) -> web.Response:
        headers = {
            "X-Consul-Index": str(max(index, 1)),
            "X-Consul-KnownLeader": "true",
            "X-Consul-LastContact": "0",
        }
        text = "" if status == 404 else json.dumps(body)
        return web.Response(
            status=status, text=text, headers=headers, content_type="application/json"
        )

    async def session_create(self, request: web.Request) -> web.Response:
        raw = await request.text()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise ConsulError(400, f"Request decode failed: {exc}") from None
        if not isinstance(body, dict):
            raise ConsulError(400, "Request decode failed: not a JSON object")
        return web.json_response({"ID": self.state.create_session(body)})

    async def session_destroy(self, request: web.Request) -> web.Response:
        self.state.destroy_session(request.match_info["id"])
        return web.json_response(True)

    async def session_renew(self, request: web.Request) -> web.Response:
        session = self.state.sessions.get(request.match_info["id"])
        if session is None:
            text = f"Session id '{request.match_info['id']}' not found"
            return web.Response(status=404, text=text)
        self.state.restart_timer(session)
        return web.json_response([session.as_json()])

    async def session_info(self, request: web.Request) -> web.Response:
        index = await self.block(request, lambda: self.state.session_index)
        session = self.state.sessions.get(request.match_info["id"])
        return self.answer([session.as_json()] if session else [], index)

    async def session_list(self, request: web.Request) -> web.Response:
        index = await self.block(request, lambda: self.state.session_index)
        node = request.match_info.get("node", NODE)
        found = [s.as_json() for s in self.state.sessions.values() if node == NODE]
        return self.answer(found, index)

    async def kv_get(self, request: web.Request) -> web.StreamResponse:
        key, query = request.match_info["key"], request.query
        recurse = "recurse" in query or "keys" in query
        index = await self.block(request, lambda: self.state.entries(key, recurse)[0])
        index, found = self.state.entries(key, recurse)
        if not found:
            return self.answer(None, index, status=404)
        if "keys" in query:
            return self.answer(_key_names(found, key, query.get("separator")), index)
        if "raw" in query:
            value = base64.b64decode(found[0].value or "")
            return web.Response(body=value, headers={"X-Consul-Index": str(index)})
        return self.answer([e.as_json() for e in found], index)

    async def kv_put(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if not key:
            raise ConsulError(400, "Missing key name")
        body = await request.read()
        if len(body) > MAX_VALUE_BYTES:
            raise ConsulError(413, f"Request body too large, max {MAX_VALUE_BYTES}")
        value = base64.b64encode(body).decode() if body else None
        return web.json_response(self.state.put(key, value, dict(request.query)))

    async def kv_delete(self, request: web.Request) -> web.Response:
        key, query = request.match_info["key"], dict(request.query)
        if not key and "recurse" not in query:
            raise ConsulError(400, "Missing key name")
        return web.json_response(self.state.delete(key, query))

    async def leader(self, request: web.Request) -> web.Response:
        return web.json_response(f"127.0.0.1:{request.url.port}")

    async def agent_self(self, request: web.Request) -> web.Response:
        config = {"Datacenter": "dc1", "NodeName": NODE, "Server": True}
        return web.json_response({"Config": config, "Member": {"Name": NODE}})


def _key_names(found: list[KVEntry], prefix: str, separator: str | None) -> list[str]:
    names: list[str] = []
    for entry in found:
        name = entry.key
        if separator:
            cut = name.find(separator, len(prefix))
            if cut != -1:
                name = name[: cut + len(separator)]
        if name not in names:
            names.append(name)
    return names


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert_file, args.key_file)
    if args.ca_file:
        # Consul's verify_incoming: every client presents a certificate of this CA.
        context.load_verify_locations(args.ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def main() -> None:
    """Serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--min-session-ttl", default="10s")
    parser.add_argument("--cert-file")
    parser.add_argument("--key-file")
    parser.add_argument("--ca-file")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    min_ttl_seconds = parse_duration(args.min_session_ttl)

    async def make_app() -> web.Application:
        state = State(args.data_dir / "consul-state.json", min_ttl_seconds)
        return Server(state).app

    web.run_app(
        make_app(),
        host=args.host,
        port=args.port,
        ssl_context=_tls_context(args),
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()
