"""The tie between the supervisors of a multi-node deployment's nodes: one TCP connection
from each node's `llmdeploy up --node-rank K` to node 0's, on distributed.control_port.

    node K → head   {"hello": K, "run": RUN}     once, then {"ping": 1} every second
    head → node K   {"refused": WHY}              a rank it has not, or one taken; closes
                    {"ready": 1}                  when the whole deployment serves
                    {"stop": WHY}                 a clean stop (`down` on the head)
                    {"ping": 1}                   every second

Either side that sees the other's connection end (EOF: its supervisor died, even by
SIGKILL — the kernel closes its sockets), or hears nothing for the grace (a partition),
treats the peer as gone: a node without its head stops its part; a head that loses a
node stops the deployment (tensor-parallel shards cannot serve without it). The engines'
own channels would notice much later or never (vLLM's node 0 waits for its peers without
a timeout; a headless node outlives its head).

Threads only read and write sockets and set fields; the supervisor's loop looks at them
every tick and decides (signals stay with the loop).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from llmdeploy import jsontext

PING_S = 1.0
MAX_LINE = 4096
HELLO_S = 5.0  # a node's `up` says hello as it connects: silence this long is not a node
MAX_PENDING = 16  # connections yet to say hello; past it the oldest is dropped (a flood)
MAX_NOTES = 50  # log lines kept between two looks of the supervisor's loop


def _send(sock: socket.socket, message: dict[str, object]) -> bool:
    try:
        sock.sendall(json.dumps(message).encode() + b"\n")
        return True
    except OSError:
        return False


def _hang_up(sock: socket.socket) -> None:
    """End a connection now. A close alone does not, on Linux, while another thread is
    blocked reading it (that read keeps it open, and wakes with nothing to tell)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Reader:
    """Decoded JSON objects from a socket, one a line, until EOF or garbage; `why` then
    says which (for the log line of a dropped peer)."""

    def __init__(self, sock: socket.socket):
        self.sock, self.why = sock, ""

    def __iter__(self) -> Iterator[dict[str, object]]:
        buffer = b""
        while True:
            try:
                chunk = self.sock.recv(4096)
            except OSError as exc:
                self.why = f"connection failed ({exc.strerror or exc})"
                return
            if not chunk:
                self.why = "closed the connection"
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    message = jsontext.loads(line)
                except ValueError:  # jsontext: a too-deep "[[[[…" is one too
                    self.why = "sent a line that is not JSON"
                    return
                if isinstance(message, dict):
                    yield message
            if len(buffer) > MAX_LINE:
                self.why = f"sent a line longer than {MAX_LINE} bytes"
                return


def _one_line(value: object) -> str:
    """A peer's words as one short line (they end up in a one-line error)."""
    return " ".join(str(value).split())[:200]


def _where(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"[:80]
    return "a peer"


@dataclass
class Peer:
    rank: int
    sock: socket.socket
    heard: float = field(default_factory=time.monotonic)
    gone: bool = False


@dataclass
class _Pending:
    """A connection that has not said hello yet."""

    where: str
    since: float = field(default_factory=time.monotonic)
    why: str = ""  # set when the head hangs up on it


class HeadLink:
    """Node 0's side: listens, knows which ranks joined and whether one was lost.

    Anybody can connect: a peer that is not a node (garbage, silence, a rank out of
    range or taken) is dropped with a log line (`take_notes`), never disturbing the
    nodes; the number of connections yet to say hello is bounded."""

    def __init__(self, host: str, port: int, nodes: int, run_id: str, grace: float):
        self.nodes, self.run_id, self.grace = nodes, run_id, grace
        self.peers: dict[int, Peer] = {}
        self._pending: dict[socket.socket, _Pending] = {}
        self._notes: list[str] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._server = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._server.bind((host, port))
            self._server.listen(nodes + MAX_PENDING)
        except OSError:
            self._server.close()
            raise
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._ping, daemon=True).start()

    def take_notes(self) -> list[str]:
        """One-line notes about dropped peers since the last call (the supervisor's loop
        writes them to the deployment's log: threads here never log themselves)."""
        with self._lock:
            notes, self._notes = self._notes, []
        return notes

    def _note(self, text: str) -> None:
        with self._lock:
            if len(self._notes) < MAX_NOTES:
                self._notes.append(text)
            elif len(self._notes) == MAX_NOTES:
                self._notes.append("more peers dropped (not listed)")

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                sock, address = self._server.accept()
            except OSError:
                if self._closed.is_set():
                    return
                # Out of file descriptors (a flood), or a connection aborted before we
                # took it: the nodes still need this loop. The flood's own connections
                # go (hello deadline), freeing descriptors.
                self._closed.wait(0.1)
                continue
            self._admit(sock, _where(address))

    def _admit(self, sock: socket.socket, where: str) -> None:
        with self._lock:
            self._pending[sock] = _Pending(where)
            waiting = [s for s, p in self._pending.items() if not p.why]  # oldest first
            oldest = waiting[0] if len(waiting) > MAX_PENDING else None
            if oldest is not None:
                self._pending[oldest].why = "too many connections waiting to say hello"
        if oldest is not None:
            _hang_up(oldest)  # its thread sees EOF, notes it and closes it
        try:
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()
        except RuntimeError:  # no thread to spare: drop this one, keep accepting
            with self._lock:
                self._pending.pop(sock, None)
            sock.close()
            self._note(f"dropped {where}: no thread left to serve it")

    def _serve(self, sock: socket.socket) -> None:
        reader, peer = _Reader(sock), None
        try:
            for message in reader:
                if peer is None:
                    peer = self._join(sock, message.get("hello"))
                    if peer is None:
                        break  # refused (and noted)
                peer.heard = time.monotonic()
        finally:
            with self._lock:
                pending = self._pending.pop(sock, None)
            if pending is not None and (pending.why or reader.why):
                self._note(f"dropped {pending.where}: {pending.why or reader.why}")
            if peer is not None:
                peer.gone = True
                if reader.why and not self._closed.is_set():
                    self._note(f"node {peer.rank} {reader.why}")
            sock.close()

    def _join(self, sock: socket.socket, rank: object) -> Peer | None:
        """The rank this hello claims, checked and taken in one step (two `up` of one
        rank at the same instant: one wins); None if refused (said to the peer)."""
        with self._lock:
            refusal = self._refusal(rank)
            pending = self._pending.pop(sock, None)
            if refusal is None:
                assert isinstance(rank, int)
                peer = self.peers[rank] = Peer(rank, sock)
                return peer
        where = pending.where if pending is not None else "a peer"
        self._note(f"refused {where}: {refusal}")
        _send(sock, {"refused": refusal})
        return None

    def _refusal(self, rank: object) -> str | None:
        """Why a hello cannot join: not a rank this deployment has, or one taken already
        (each node's `up` makes its own run id: that is not compared). Lock held."""
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 < rank < self.nodes:
            return f"node 0 has nodes 1-{self.nodes - 1}, not {json.dumps(rank)[:20]}"
        taken = self.peers.get(rank)
        if taken is not None and not taken.gone:
            return f"node {rank} has joined already (another `up --node-rank {rank}`?)"
        return None

    def _ping(self) -> None:
        while not self._closed.wait(PING_S):
            self._drop_silent()
            with self._lock:
                peers = list(self.peers.values())
            for peer in peers:
                if not peer.gone:
                    _send(peer.sock, {"ping": 1})

    def _drop_silent(self) -> None:
        """Hang up on connections that have not said hello within HELLO_S."""
        now = time.monotonic()
        with self._lock:
            late = [s for s, p in self._pending.items() if now - p.since > HELLO_S]
            for sock in late:
                self._pending[sock].why = f"said no hello within {HELLO_S:g} s"
        for sock in late:
            _hang_up(sock)

    def missing(self) -> list[int]:
        with self._lock:
            return [k for k in range(1, self.nodes) if k not in self.peers]

    def lost(self) -> list[int]:
        """Ranks that joined and then went away (EOF, or silent past the grace)."""
        now = time.monotonic()
        with self._lock:
            peers = list(self.peers.values())
        return sorted(p.rank for p in peers if p.gone or now - p.heard > self.grace)

    def tell(self, message: dict[str, object]) -> None:
        with self._lock:
            peers = list(self.peers.values())
        for peer in peers:
            _send(peer.sock, message)

    def close(self, why: str | None = None) -> None:
        if why is not None:
            self.tell({"stop": why})
        self._closed.set()
        _hang_up(self._server)  # wakes the accept thread; else the port keeps listening
        self._server.close()
        with self._lock:
            socks = [p.sock for p in self.peers.values()] + list(self._pending)
        for sock in socks:
            _hang_up(sock)  # each one's thread then closes it


class WorkerLink:
    """Node K's side: connected to the head; says whether it is ready, stopped or gone."""

    def __init__(self, sock: socket.socket, rank: int, run_id: str, grace: float):
        self.sock, self.grace = sock, grace
        self.heard = time.monotonic()
        self.ready = False
        self.stopped: str | None = None  # the head's reason for a clean stop
        self.refused: str | None = None  # why the head would not take this node
        self.gone = False
        self._closed = threading.Event()
        self._hello_at = time.monotonic()
        _send(sock, {"hello": rank, "run": run_id})
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._ping, daemon=True).start()

    @classmethod
    def connect(cls, host: str, port: int, timeout: float) -> socket.socket | None:
        """One attempt; None if the head does not listen (yet)."""
        try:
            return socket.create_connection((host, port), timeout=timeout)
        except OSError:
            return None

    def _read(self) -> None:
        self.sock.settimeout(None)
        for message in _Reader(self.sock):
            self.heard = time.monotonic()
            if message.get("ready"):
                self.ready = True
            if "stop" in message:
                self.stopped = _one_line(message["stop"])
            if "refused" in message:
                self.refused = _one_line(message["refused"])
        self.gone = True

    def _ping(self) -> None:
        while not self._closed.wait(PING_S):
            if not _send(self.sock, {"ping": 1}):
                self.gone = True

    def heard_back(self) -> bool:
        """The head said something since the hello (a refusal comes at once, a ping
        within a second)."""
        return self.refused is not None or self.gone or self.heard > self._hello_at

    def heard_from_head(self) -> bool:
        """Whether whatever listens there ever answered like node 0's llmdeploy."""
        return self.heard > self._hello_at

    def head_lost(self) -> bool:
        return self.gone or time.monotonic() - self.heard > self.grace

    def close(self) -> None:
        self._closed.set()
        _hang_up(self.sock)  # the reading thread wakes; the head sees EOF at once
        with contextlib.suppress(OSError):
            self.sock.close()
