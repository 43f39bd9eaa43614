"""The netlink client takes answers from the kernel only, and never waits forever.

A pod's processes own its netns after ADD and can send to nsveth's netlink
port id there: every datagram whose source port is not 0 (the kernel) is
dropped, and a request the kernel does not answer ends after a receive
timeout with code 100 naming it. (The kernel side, refusing unicasts to a
connected socket, is tested in tests/integration/test_files_hardening.py.)
"""

from __future__ import annotations

import socket
import struct
import time

import pytest
from nsveth import links, netlink
from nsveth.errors import CNIError, Code


def _done(seq: int) -> bytes:
    return struct.pack("=IHHIIi", 20, netlink.NLMSG_DONE, netlink.NLM_F_MULTI, seq, 0, 0)


def _error(seq: int, code: int) -> bytes:
    return struct.pack("=IHHIIi", 36, netlink.NLMSG_ERROR, 0, seq, 0, -code) + struct.pack("=IHHII", 16, 18, 5, seq, 0)


class _Forged:
    """Stands in for the socket: first the forged datagrams (from port 4242), then the kernel's."""

    def __init__(self, real: socket.socket, forged: list[bytes]) -> None:
        self.real, self.forged = real, forged

    def send(self, data: bytes) -> int:
        return self.real.send(data)

    def recvfrom(self, size: int):
        if self.forged:
            return self.forged.pop(0), (4242, 0)
        return self.real.recvfrom(size)

    def close(self) -> None:
        self.real.close()


def test_datagrams_not_from_the_kernel_are_dropped():
    with netlink.Socket() as sock:
        seq = sock._seq + 1
        sock._sock = _Forged(sock._sock, [_done(seq), _error(seq, 1)])
        names = [link.name for link in links.dump(sock)]
        assert "lo" in names
        sock._sock = _Forged(sock._sock.real, [_done(sock._seq + 1), _error(sock._seq + 1, 19)])
        lo = links.get(sock, name="lo")
        assert lo is not None and lo.name == "lo"


def test_sockets_are_connected_to_the_kernel():
    with netlink.Socket() as sock:
        assert sock._sock.getpeername() == (0, 0)
        timeout = struct.unpack("@ll", sock._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))
        assert timeout == (netlink.TIMEOUT_S, 0)


def test_no_answer_is_code_100_naming_the_request(monkeypatch):
    monkeypatch.setattr(netlink, "TIMEOUT_S", 1)
    with netlink.Socket() as sock:
        sock._request = "RTM_GETLINK"  # as if sent; the kernel never answers what was not sent
        started = time.monotonic()
        with pytest.raises(CNIError) as e:
            list(sock._replies())
        assert 0.9 < time.monotonic() - started < 3
    assert e.value.code == Code.KERNEL
    assert "RTM_GETLINK" in e.value.msg and "no answer from the kernel within 1 s" in e.value.msg
