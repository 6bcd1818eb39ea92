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

PING_S = 1.0
MAX_LINE = 4096


def _send(sock: socket.socket, message: dict[str, object]) -> bool:
    try:
        sock.sendall(json.dumps(message).encode() + b"\n")
        return True
    except OSError:
        return False


def _lines(sock: socket.socket) -> Iterator[dict[str, object]]:
    """Decoded JSON objects from the socket until EOF or garbage (then it stops)."""
    buffer = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except OSError:
            return
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except ValueError:
                return
            if isinstance(message, dict):
                yield message
        if len(buffer) > MAX_LINE:
            return


@dataclass
class Peer:
    rank: int
    sock: socket.socket
    heard: float = field(default_factory=time.monotonic)
    gone: bool = False


class HeadLink:
    """Node 0's side: listens, knows which ranks joined and whether one was lost."""

    def __init__(self, host: str, port: int, nodes: int, run_id: str, grace: float):
        self.nodes, self.run_id, self.grace = nodes, run_id, grace
        self.peers: dict[int, Peer] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._server = socket.socket(family, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind((host, port))
        self._server.listen(nodes + 4)
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._ping, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        peer: Peer | None = None
        for message in _lines(sock):
            rank = message.get("hello")
            if peer is None:
                refusal = self._refusal(rank)
                if refusal:
                    _send(sock, {"refused": refusal})
                    break
                peer = Peer(int(str(rank)), sock)
                with self._lock:
                    self.peers[peer.rank] = peer
            peer.heard = time.monotonic()
        if peer is None:
            sock.close()
            return
        peer.gone = True

    def _refusal(self, rank: object) -> str | None:
        """Why a hello cannot join: not a rank this deployment has, or one taken already
        (each node's `up` makes its own run id: that is not compared)."""
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 < rank < self.nodes:
            return f"node 0 has nodes 1-{self.nodes - 1}, not {str(rank)[:20]}"
        with self._lock:
            taken = self.peers.get(rank)
        if taken is not None and not taken.gone:
            return f"node {rank} has joined already (another `up --node-rank {rank}`?)"
        return None

    def _ping(self) -> None:
        while not self._closed.wait(PING_S):
            with self._lock:
                peers = list(self.peers.values())
            for peer in peers:
                if not peer.gone:
                    _send(peer.sock, {"ping": 1})

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
        self._server.close()
        with self._lock:
            for peer in self.peers.values():
                with contextlib.suppress(OSError):
                    peer.sock.close()


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
        for message in _lines(self.sock):
            self.heard = time.monotonic()
            if message.get("ready"):
                self.ready = True
            if "stop" in message:
                self.stopped = str(message["stop"])[:200]
            if "refused" in message:
                self.refused = str(message["refused"])[:200]
        self.gone = True

    def _ping(self) -> None:
        while not self._closed.wait(PING_S):
            if not _send(self.sock, {"ping": 1}):
                self.gone = True

    def heard_back(self) -> bool:
        """The head said something since the hello (a refusal comes at once, a ping
        within a second)."""
        return self.refused is not None or self.gone or self.heard > self._hello_at

    def head_lost(self) -> bool:
        return self.gone or time.monotonic() - self.heard > self.grace

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self.sock.close()
