"""The venue server: one port, REST + market streams + WebSocket API (Starlette on uvicorn).

::

    Venue
     ├── Engine (matching.py)      <- MarketFeeder (replay | synthetic)
     ├── VenueApi (api.py)         <- rest.py routes, wsapi.py sessions
     ├── StreamHub (streams.py)    -> /ws/<stream>, /stream?streams=, SUBSCRIBE
     └── UserHub (wsapi.py)        -> userDataStream events on /ws-api/v3

Everything runs on one asyncio loop: the engine is plain synchronous code
called from request handlers and from the market feeder, and after each call
:meth:`Venue.publish` routes its events to the client queues. A depth task
flushes diff-depth events every 100 ms and 1000 ms.

:func:`start_venue` runs a venue in a background thread on a free port of
127.0.0.1 (tests, embedded use); ``wiresens venue serve`` runs it in the
foreground.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .accounts import VenueAccounts
from .api import VenueApi, now_ms
from .config import VenueConfig
from .faults import MALFORMED_FRAME
from .filters import DEFAULT_SYMBOLS, generic_instrument
from .market import MarketFeeder
from .matching import BalanceEvent, Engine, ExecEvent, PublicTrade
from .rest import admin_routes, routes
from .streams import Client, StreamHub
from .wsapi import UserHub, WsApiSession

__all__ = ["RunningVenue", "Venue", "start_venue"]

_encode = msgspec.json.Encoder().encode


class Venue:
    """A Binance-compatible venue: engine, API, streams and the market feeder.

    Parameters
    ----------
    config:
        Serving options (:class:`VenueConfig`).
    accounts:
        Accounts and API keys (:func:`wiresens.venue.accounts.load_accounts`).
    """

    def __init__(self, config: VenueConfig, accounts: VenueAccounts) -> None:
        self.config = config
        symbols = {s: DEFAULT_SYMBOLS.get(s) or generic_instrument(s) for s in config.symbols}
        self.engine = Engine(symbols, config.default_stp)
        self.accounts = accounts
        self.api = VenueApi(config, self.engine, accounts, self.publish)
        self.hub = StreamHub(self.engine)
        self.users = UserHub()
        self.feeder = MarketFeeder(
            self.engine,
            config.market,
            self.publish,
            config.speed,
            config.synthetic_interval_ms,
            config.replay_loop,
        )
        self.clients: set[Client] = set()
        self.publish()
        admin = (
            admin_routes(self.api, self.drop_connections, self.send_garbage)
            if self.api.faults is not None
            else []
        )
        self.app = Starlette(
            routes=[
                *admin,
                *routes(self.api),
                WebSocketRoute("/ws", self._ws_streams),
                WebSocketRoute("/ws/{streams:path}", self._ws_streams),
                WebSocketRoute("/stream", self._ws_streams),
                WebSocketRoute("/ws-api/v3", self._ws_api),
            ],
            lifespan=self._lifespan,
        )

    def publish(self) -> None:
        """Route the engine's pending events to stream and user-data clients."""
        events = self.engine.events
        if events:
            t = now_ms()
            hub, users = self.hub, self.users
            for ev in events:
                if isinstance(ev, PublicTrade):
                    hub.on_trade(ev, t)
                elif isinstance(ev, (ExecEvent, BalanceEvent)) and not self.api.mute_user_events:
                    users.on_event(ev)
            events.clear()
        self.hub.check_book_tickers()

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(self.feeder.run()), asyncio.create_task(self._depth_loop())]
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    async def _depth_loop(self) -> None:
        fast = self.config.depth_fast_ms / 1000.0
        ratio = max(1, self.config.depth_slow_ms // max(1, self.config.depth_fast_ms))
        n = 0
        loop = asyncio.get_running_loop()
        nxt = loop.time()
        while True:
            nxt += fast
            await asyncio.sleep(max(0.0, nxt - loop.time()))
            t = now_ms()
            self.hub.flush_depth(True, t)
            n += 1
            if n % ratio == 0:
                self.hub.flush_depth(False, t)

    # -- websockets -------------------------------------------------------------------------
    async def _writer(self, ws: WebSocket, client: Client) -> None:
        faults = self.api.faults
        while True:
            msg = await client.queue.get()
            if faults is not None:
                await faults.wait_stall()
            if msg is None:
                with contextlib.suppress(Exception):
                    await ws.close(1008)
                return
            await ws.send_text(msg)

    async def _ws_streams(self, ws: WebSocket) -> None:
        path = ws.scope["path"]
        combined = path.startswith("/stream")
        if path.startswith("/ws/"):
            names = [s for s in path[4:].split("/") if s]
        else:
            names = [s for s in ws.query_params.get("streams", "").split("/") if s]
        client = Client(combined, self.config.ws_queue_size)
        bad = [s for s in names if self.hub.parse(s) is None]
        if bad:
            await ws.close(1008, f"unknown stream {bad[0]!r}")
            return
        if self.api.faults is not None and self.api.faults.refusing():
            await ws.close(1013, "refused (injected fault)")
            return
        await ws.accept()
        self.clients.add(client)
        for s in names:
            self.hub.subscribe(client, s)
        writer = asyncio.create_task(self._writer(ws, client))
        try:
            while True:
                text = await ws.receive_text()
                client.send(self._control(client, text))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.clients.discard(client)
            self.hub.drop(client)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    def _control(self, client: Client, text: str) -> str:
        """Answer a SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS frame."""
        try:
            req = msgspec.json.decode(text)
        except msgspec.DecodeError:
            return _encode(
                {"error": {"code": 3, "msg": "Invalid JSON: expected an object"}}
            ).decode()
        if not isinstance(req, dict):
            return _encode({"error": {"code": 3, "msg": "Invalid request"}}).decode()
        rid: Any = req.get("id")
        method = req.get("method")
        params = req.get("params") or []
        if method == "LIST_SUBSCRIPTIONS":
            return _encode({"result": sorted(client.streams), "id": rid}).decode()
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE") or not isinstance(params, list):
            return _encode(
                {
                    "error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"},
                    "id": rid,
                }
            ).decode()
        for s in params:
            if not isinstance(s, str) or self.hub.parse(s) is None:
                return _encode(
                    {
                        "error": {"code": 2, "msg": f"Invalid request: unknown stream {s!r}"},
                        "id": rid,
                    }
                ).decode()
        for s in params:
            if method == "SUBSCRIBE":
                self.hub.subscribe(client, s)
            else:
                self.hub.unsubscribe(client, s)
        return _encode({"result": None, "id": rid}).decode()

    async def _ws_api(self, ws: WebSocket) -> None:
        faults = self.api.faults
        if faults is not None and faults.refusing():
            await ws.close(1013, "refused (injected fault)")
            return
        await ws.accept()
        client = Client(False, self.config.ws_queue_size)
        self.clients.add(client)
        peer = ws.client.host if ws.client else "?"
        session = WsApiSession(self.api, self.users, client, peer)
        writer = asyncio.create_task(self._writer(ws, client))
        try:
            while True:
                text = await ws.receive_text()
                if faults is not None:
                    await faults.wait_stall()
                out = session.handle(text)
                if out is not None:
                    client.send(out)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.clients.discard(client)
            session.close()
            client.close()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    # -- faults ------------------------------------------------------------------------------
    def drop_connections(self) -> int:
        """Close every WebSocket connection (streams and WebSocket API); returns how many."""
        n = 0
        for c in list(self.clients):
            if not c.closed:
                while c.queue.full():  # room for the close marker: nothing else goes out
                    c.queue.get_nowait()
                c.close()
                n += 1
        self.clients.clear()
        return n

    def send_garbage(self) -> int:
        """One unparseable frame on every open WebSocket connection; returns how many."""
        for c in self.clients:
            c.send(MALFORMED_FRAME)
        return len(self.clients)

    # -- serving ----------------------------------------------------------------------------
    def uvicorn_config(self) -> uvicorn.Config:
        c = self.config
        return uvicorn.Config(
            self.app,
            host=c.host,
            port=c.port,
            ws="websockets-sansio",
            ws_ping_interval=c.ping_interval_s,
            ws_ping_timeout=c.pong_timeout_s,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )

    def serve(self) -> None:
        """Serve in the foreground until interrupted."""
        uvicorn.Server(self.uvicorn_config()).run()


@dataclass
class RunningVenue:
    """A venue serving in a background thread; :meth:`stop` ends it."""

    venue: Venue
    port: int
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def start_venue(config: VenueConfig, accounts: VenueAccounts) -> RunningVenue:
    """Start a venue on a free port of 127.0.0.1 in a background thread; wait until it serves."""
    venue = Venue(config, accounts)
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listening socket says TCP; without it each HTTP response waits ~40 ms (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(venue.uvicorn_config())
    server.config.port = port

    def run() -> None:
        asyncio.run(server.serve(sockets=[sock]))

    th = threading.Thread(target=run, name=f"venue:{port}", daemon=True)
    th.start()
    for _ in range(500):
        if server.started or not th.is_alive():
            break
        threading.Event().wait(0.01)
    if not server.started:
        raise RuntimeError(f"venue did not start on 127.0.0.1:{port}")
    return RunningVenue(venue, port, server, th)
