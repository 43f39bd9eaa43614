"""A small rtnetlink client on pyroute2's message classes.

pyroute2 does the encoding and decoding of every message. Its high-level
`IPRoute` and its package `__init__` are avoided on purpose: the package init
imports every subsystem (NDB, IPDB, conntrack, asyncio...) and costs 100+ ms,
paid on each pod operation since the plugin is a fresh process every time. The
message classes alone cost about 20 ms. `_import_messages` loads them without
running `pyroute2/__init__.py`; this relies on pyroute2's module layout, which
is why requirements.txt pins its version and tests/unit/test_netlink_import.py
checks the technique.

A socket belongs to the network namespace it was opened in, so a command
opens one socket in the host netns and one in the pod netns (see netns.py)
and then works on both without switching namespaces again.

After ADD a pod's processes own its netns, and any of them can send a
netlink message to nsveth's port id there. So each socket is connected to
the kernel (nl_pid 0: the kernel then refuses unicasts to it from any other
sender), every datagram whose source is not the kernel is dropped all the
same, and a receive timeout bounds every wait: no answer within
TIMEOUT_S is an error naming the request (code 100), never a hang.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import socket
import struct
import sys
import types
from collections.abc import Iterator
from typing import Any, Protocol

from .errors import CNIError, Code, NetlinkError


def _import_messages() -> None:
    if "pyroute2" not in sys.modules:
        spec = importlib.util.find_spec("pyroute2")
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError("pyroute2 is not installed")
        stub = types.ModuleType("pyroute2")
        stub.__path__ = list(spec.submodule_search_locations)
        stub.__spec__ = spec
        stub.__file__ = spec.origin
        sys.modules["pyroute2"] = stub


_import_messages()

from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: E402
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: E402
from pyroute2.netlink.rtnl.ndmsg import ndmsg  # noqa: E402
from pyroute2.netlink.rtnl.rtmsg import rtmsg  # noqa: E402

__all__ = ["ifaddrmsg", "ifinfmsg", "ndmsg", "rtmsg", "Message", "Socket", "NetlinkError"]

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_GETNEIGH = 28, 30

NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLMSGERR_ATTR_MSG = 1

_SOL_NETLINK = 270
_NETLINK_CAP_ACK, _NETLINK_EXT_ACK = 10, 11
_HDR = struct.Struct("=IHHII")

TIMEOUT_S = 10  # the kernel answers in microseconds; this only bounds a wait that would never end
_TIMEVAL = struct.Struct("@ll")

_NAMES = {
    RTM_NEWLINK: "RTM_NEWLINK", RTM_DELLINK: "RTM_DELLINK", RTM_GETLINK: "RTM_GETLINK", RTM_SETLINK: "RTM_SETLINK",
    RTM_NEWADDR: "RTM_NEWADDR", RTM_DELADDR: "RTM_DELADDR", RTM_GETADDR: "RTM_GETADDR",
    RTM_NEWROUTE: "RTM_NEWROUTE", RTM_DELROUTE: "RTM_DELROUTE", RTM_GETROUTE: "RTM_GETROUTE",
}

_DECODERS = {
    RTM_NEWLINK: ifinfmsg,
    RTM_NEWADDR: ifaddrmsg,
    RTM_NEWROUTE: rtmsg,
    RTM_NEWNEIGH: ndmsg,  # bridge FDB entries (AF_BRIDGE)
}


class Message(Protocol):
    """What nsveth uses of a pyroute2 message (pyroute2 ships no types)."""

    data: bytes

    def __getitem__(self, key: str) -> Any: ...

    def __setitem__(self, key: str, value: Any) -> None: ...

    def get_attr(self, name: str) -> Any: ...

    def encode(self) -> Any: ...


class Socket:
    """One NETLINK_ROUTE socket, bound to the netns current at creation."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        try:
            self._sock.setsockopt(_SOL_NETLINK, _NETLINK_EXT_ACK, 1)
            self._sock.setsockopt(_SOL_NETLINK, _NETLINK_CAP_ACK, 1)
        except OSError:
            pass  # older kernels: plain errno answers
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL.pack(TIMEOUT_S, 0))
            self._sock.bind((0, 0))
            self._sock.connect((0, 0))  # to the kernel: unicasts from other sockets are refused
        except BaseException:
            self._sock.close()
            raise
        self._seq = 0
        self._request = ""

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, msg: Message, msg_type: int, flags: int = 0) -> None:
        """Send one request and wait for the kernel's ack; raise NetlinkError on refusal."""
        self._send(msg, msg_type, flags | NLM_F_REQUEST | NLM_F_ACK)
        for _ in self._replies():
            pass

    def dump(self, msg: Message, msg_type: int) -> list[Message]:
        """All objects of one kind (links, addresses, routes), decoded."""
        self._send(msg, msg_type, NLM_F_REQUEST | NLM_F_DUMP)
        return list(self._replies())

    def get(self, msg: Message, msg_type: int) -> Message | None:
        """One object (e.g. RTM_GETLINK by name); raises NetlinkError if absent."""
        self._send(msg, msg_type, NLM_F_REQUEST)
        found = list(self._replies())
        return found[0] if found else None

    def _send(self, msg: Message, msg_type: int, flags: int) -> None:
        self._seq += 1
        self._request = _NAMES.get(msg_type, f"type {msg_type}")
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = flags
        msg["header"]["sequence_number"] = self._seq
        msg["header"]["pid"] = 0
        msg.encode()
        self._sock.send(msg.data)

    def _replies(self) -> Iterator[Message]:
        while True:
            try:
                data, (sender, _groups) = self._sock.recvfrom(1 << 18)
            except BlockingIOError:  # SO_RCVTIMEO expired
                raise CNIError(
                    Code.KERNEL, f"netlink {self._request} request: no answer from the kernel within {TIMEOUT_S} s"
                ) from None
            if sender != 0:
                continue  # not from the kernel: forged
            offset = 0
            while offset + _HDR.size <= len(data):
                length, mtype, mflags, seq, _pid = _HDR.unpack_from(data, offset)
                if length < _HDR.size:
                    raise NetlinkError(errno.EPROTO, "malformed netlink message")
                chunk = data[offset : offset + length]
                offset += (length + 3) & ~3
                if seq != self._seq:
                    continue  # a late answer to an earlier request
                if mtype == NLMSG_DONE:
                    return
                if mtype == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", chunk, _HDR.size)
                    if code == 0:
                        return
                    raise NetlinkError(-code, _error_text(-code, chunk, mflags))
                decoder = _DECODERS.get(mtype)
                if decoder is not None:
                    item = decoder(chunk)
                    item.decode()
                    yield item
                if not mflags & NLM_F_MULTI:
                    return


def _error_text(code: int, chunk: bytes, flags: int) -> str:
    """The kernel's extended-ack message when it sent one, else strerror."""
    text = os.strerror(code)
    if not flags & NLM_F_ACK_TLVS:
        return text
    offset = _HDR.size + 4
    if flags & NLM_F_CAPPED:
        offset += _HDR.size
    else:
        (orig_len,) = struct.unpack_from("=I", chunk, offset)
        offset += orig_len
    while offset + 4 <= len(chunk):
        nla_len, nla_type = struct.unpack_from("=HH", chunk, offset)
        if nla_len < 4:
            break
        if nla_type == NLMSGERR_ATTR_MSG:
            msg = chunk[offset + 4 : offset + nla_len].split(b"\0", 1)[0].decode(errors="replace")
            return f"{text}: {msg}" if msg else text
        offset += (nla_len + 3) & ~3
    return text
