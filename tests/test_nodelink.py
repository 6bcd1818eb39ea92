"""The link between a multi-node deployment's supervisors (run/nodelink.py), over real
loopback sockets: joins, refusals said as such, a lost node, a clean stop."""

from __future__ import annotations

import socket
import time

from llmdeploy.run.nodelink import HeadLink, WorkerLink


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _join(port: int, rank: int) -> WorkerLink:
    sock = WorkerLink.connect("127.0.0.1", port, timeout=2)
    assert sock is not None
    return WorkerLink(sock, rank, "run", grace=5)


def _until(check, timeout: float = 5) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_joins_refusals_loss_and_stop() -> None:
    port = _port()
    head = HeadLink("127.0.0.1", port, nodes=2, run_id="head", grace=5)
    try:
        one = _join(port, 1)
        assert _until(lambda: head.missing() == [])
        twin = _join(port, 1)  # a second `up --node-rank 1`
        assert _until(lambda: twin.refused is not None)
        assert "node 1 has joined already" in str(twin.refused)
        stranger = _join(port, 7)
        assert _until(lambda: stranger.refused is not None)
        assert "nodes 1-1, not 7" in str(stranger.refused)
        assert not one.head_lost() and one.refused is None and head.lost() == []
        head.tell({"ready": 1})
        assert _until(lambda: one.ready)
        one.close()  # node 1's supervisor died: the head sees it go
        assert _until(lambda: head.lost() == [1])
    finally:
        head.close()


def test_a_clean_stop_reaches_the_nodes() -> None:
    port = _port()
    head = HeadLink("127.0.0.1", port, nodes=3, run_id="head", grace=5)
    nodes = [_join(port, 1), _join(port, 2)]
    assert _until(lambda: head.missing() == [])
    head.close("node 0 was stopped")
    assert _until(lambda: all(n.stopped == "node 0 was stopped" for n in nodes))
    for node in nodes:
        node.close()
