"""A small fault-injecting TCP proxy on loopback (asyncio in a background thread) for the reliability tests.

``tc netem`` and Toxiproxy are not available here, so the faults are made in-process: every connection
to ``127.0.0.1:<port>`` is relayed to the upstream server, and the test sets what goes wrong:

    sever()                 reset every open connection now (a cable pulled, a firewall state flush)
    mode = "pass"           relay faithfully
    mode = "reset"          accept, then reset at once
    mode = "blackhole"      accept and read, never answer (a silently dropping firewall)
    mode = "garbage"        answer every connection with ``garbage`` and close (no TLS, wrong service)
    cut_after = N           downstream (server -> client) bytes relayed before the link is reset
    stall_after = N         after N downstream bytes, stop relaying but keep the link open
    drip = (n, seconds)     relay downstream n bytes at a time with a pause in between
    corrupt_at = N          flip one bit of the N-th downstream byte of each connection
    http = (status, retry_after, budget)  answer the next ``budget`` HTTP requests itself with ``status``
                            (and a Retry-After header unless None), then relay again
    commit = CommitCut(...) recognise COMMIT in the MySQL or PostgreSQL wire protocol and cut the
                            link around it (see CommitCut) to make the commit's outcome unknown

Only loopback is ever used (NETWORK RULE of the suite). Counters say how many faults were injected.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CommitCut:
    """Cut the link around the COMMIT of a transaction that wrote ``edx_checkpoint``.

    ``variant``:
      * ``drop_request``  - the COMMIT is swallowed and the link reset: the server rolls back;
      * ``cut_after``     - the COMMIT is relayed and the link reset at once: the outcome is a race;
      * ``drop_reply``    - the COMMIT is relayed, the server's answer is swallowed and the link reset:
                            the server committed, the client cannot know.
    ``probability`` per eligible COMMIT, drawn from ``rng`` (seeded by the test).
    """

    protocol: str                     # "mysql" or "postgresql"
    variants: tuple[str, ...] = ("drop_request", "cut_after", "drop_reply")
    probability: float = 1.0
    only_checkpoint: bool = True
    rng: random.Random = field(default_factory=random.Random)
    injected: dict[str, int] = field(default_factory=dict)


class _Conn:
    """Protocol state of one relayed connection (which COMMIT is which)."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.buf = b""
        self.startup = True          # PostgreSQL: untyped startup/SSL request messages first
        self.txn_checkpoint = False  # this transaction wrote edx_checkpoint
        self.armed: str | None = None

    def messages(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Split client->server bytes into (kind, payload) messages, keeping partial ones buffered."""
        self.buf += data
        out = []
        while True:
            if self.protocol == "mysql":
                if len(self.buf) < 4:
                    break
                n = int.from_bytes(self.buf[:3], "little")
                if len(self.buf) < 4 + n:
                    break
                payload, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                out.append((payload[:1], payload[1:]))
            else:
                if self.startup:
                    if len(self.buf) < 8:
                        break
                    (n,) = struct.unpack(">I", self.buf[:4])
                    if len(self.buf) < n:
                        break
                    code = struct.unpack(">I", self.buf[4:8])[0]
                    self.buf = self.buf[n:]
                    if code not in (80877103, 80877104):  # SSLRequest / GSSENCRequest come first
                        self.startup = False
                    out.append((b"", b""))
                    continue
                if len(self.buf) < 5:
                    break
                (n,) = struct.unpack(">I", self.buf[1:5])
                if len(self.buf) < 1 + n:
                    break
                kind, payload, self.buf = self.buf[:1], self.buf[5:1 + n], self.buf[1 + n:]
                out.append((kind, payload))
        return out

    def sql_of(self, kind: bytes, payload: bytes) -> bytes | None:
        if self.protocol == "mysql":
            return payload if kind == b"\x03" else None   # COM_QUERY
        if kind == b"Q":
            return payload.rstrip(b"\x00")
        if kind == b"P":                                    # Parse: name\0 query\0 ...
            parts = payload.split(b"\x00", 2)
            return parts[1] if len(parts) > 1 else None
        return None


class FaultProxy:
    """``with FaultProxy(upstream_port) as p:`` relays 127.0.0.1:p.port to 127.0.0.1:upstream_port."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        assert upstream_host in ("127.0.0.1", "localhost", "::1"), "loopback only"
        self.upstream = (upstream_host, upstream_port)
        self.mode = "pass"
        self.garbage = b"\x15\x03\x01\x00\x02\x02\x28"  # a TLS alert: handshake_failure
        self.cut_after: int | None = None
        self.stall_after: int | None = None
        self.drip: tuple[int, float] | None = None
        self.commit: CommitCut | None = None
        self.corrupt_at: int | None = None
        self.http: tuple[int, float | None, int] | None = None
        self.http_log: list[tuple[float, str]] = []   # (monotonic time, request line) of every faked answer
        self.downstream_bytes: list[int] = []          # per finished connection
        self.connections = 0
        self.faults = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: Any = None
        self.port = 0
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="faultproxy")

    # -- control (called from the test thread)
    def start(self) -> "FaultProxy":
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        fut.result(10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def _stop() -> None:
            self._server.close()
            self._reset_all()
        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def sever(self) -> int:
        """Reset every open connection; returns how many there were."""
        async def _sever() -> int:
            return self._reset_all()
        n = asyncio.run_coroutine_threadsafe(_sever(), self._loop).result(10)
        self.faults += n
        return n

    def reset_settings(self) -> None:
        self.mode, self.cut_after, self.stall_after, self.drip, self.commit = "pass", None, None, None, None
        self.corrupt_at, self.http = None, None

    # -- relay (event loop thread)
    def _reset_all(self) -> int:
        n = 0
        for w in list(self._writers):
            _abort(w)
            n += 1
        self._writers.clear()
        return n

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(cw)
        mode = self.mode
        try:
            if mode == "reset":
                self.faults += 1
                _abort(cw)
                return
            if mode == "blackhole":
                self.faults += 1
                while await cr.read(65536):
                    pass
                return
            if mode == "garbage":
                self.faults += 1
                cw.write(self.garbage)
                await cw.drain()
                cw.close()
                return
            if self.http is not None and self.http[2] > 0:
                await self._fake_http(cr, cw)
                return
            try:
                sr, sw = await asyncio.open_connection(*self.upstream)
            except OSError:
                _abort(cw)
                return
            self._writers.add(sw)
            state = _Conn(self.commit.protocol) if self.commit else None
            up = asyncio.create_task(self._upstream(cr, sw, cw, state))
            down = asyncio.create_task(self._downstream(sr, cw, sw, state))
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            for t in (up, down):
                t.cancel()
            for w in (cw, sw):
                if not w.is_closing():
                    w.close()
            self._writers.discard(sw)
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(cw)

    async def _fake_http(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        import time

        head = await cr.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if length:
            await cr.readexactly(length)
        status, retry_after, budget = self.http  # type: ignore[misc]
        self.http = (status, retry_after, budget - 1)
        self.faults += 1
        self.http_log.append((time.monotonic(), head.split(b"\r\n", 1)[0].decode()))
        body = b'{"error": {"code": "test-fault", "message": "injected by the fault proxy"}}'
        extra = f"Retry-After: {retry_after:g}\r\n" if retry_after is not None else ""
        cw.write(f"HTTP/1.1 {status} Fault\r\nContent-Type: application/json\r\n{extra}"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        await cw.drain()
        cw.close()

    async def _upstream(self, cr: asyncio.StreamReader, sw: asyncio.StreamWriter, cw: asyncio.StreamWriter,
                        state: _Conn | None) -> None:
        while True:
            data = await cr.read(65536)
            if not data:
                sw.close()
                return
            cut = self.commit
            if state is not None and cut is not None:
                for kind, payload in state.messages(data):
                    sql = state.sql_of(kind, payload)
                    if sql is None:
                        continue
                    head = sql.lstrip()[:32].upper()
                    if b"EDX_CHECKPOINT" in sql[:200].upper() and head.startswith((b"INSERT", b"UPDATE")):
                        state.txn_checkpoint = True
                    elif head.startswith(b"COMMIT"):
                        eligible = state.txn_checkpoint or not cut.only_checkpoint
                        state.txn_checkpoint = False
                        if eligible and cut.rng.random() < cut.probability:
                            variant = cut.rng.choice(cut.variants)
                            cut.injected[variant] = cut.injected.get(variant, 0) + 1
                            self.faults += 1
                            if variant == "drop_request":
                                _abort(sw)
                                _abort(cw)
                                return
                            sw.write(data)
                            await sw.drain()
                            if variant == "cut_after":
                                _abort(sw)
                                _abort(cw)
                                return
                            state.armed = "drop_reply"
                            data = b""
                            break
                    elif head.startswith((b"ROLLBACK", b"BEGIN", b"START TRANSACTION")):
                        state.txn_checkpoint = False
            if data:
                sw.write(data)
                await sw.drain()

    async def _downstream(self, sr: asyncio.StreamReader, cw: asyncio.StreamWriter, sw: asyncio.StreamWriter,
                          state: _Conn | None) -> None:
        sent = 0
        while True:
            data = await sr.read(65536)
            if not data:
                self.downstream_bytes.append(sent)
                cw.close()
                return
            if self.corrupt_at is not None and sent <= self.corrupt_at < sent + len(data):
                i = self.corrupt_at - sent
                data = data[:i] + bytes([data[i] ^ 0x04]) + data[i + 1:]
                self.faults += 1
            if state is not None and state.armed == "drop_reply":
                # the server answered the COMMIT: the client never hears it
                _abort(sw)
                _abort(cw)
                return
            if self.cut_after is not None and sent + len(data) >= self.cut_after:
                cw.write(data[: max(0, self.cut_after - sent)])
                await cw.drain()
                self.faults += 1
                _abort(cw)
                _abort(sw)
                return
            if self.stall_after is not None and sent + len(data) >= self.stall_after:
                cw.write(data[: max(0, self.stall_after - sent)])
                await cw.drain()
                self.faults += 1
                await asyncio.sleep(3600)  # cancelled when the client gives up
                return
            if self.drip is not None:
                n, pause = self.drip
                for i in range(0, len(data), n):
                    cw.write(data[i:i + n])
                    await cw.drain()
                    await asyncio.sleep(pause)
            else:
                cw.write(data)
                await cw.drain()
            sent += len(data)


def _abort(w: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), like a dropped connection, not a polite FIN."""
    try:
        sock = w.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        w.transport.abort()
    except (OSError, RuntimeError):
        pass
