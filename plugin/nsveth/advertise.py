"""Unsolicited ARP and IPv6 neighbour advertisements for a new pod interface.

Pod IPs are recycled quickly and a new pod gets a new MAC. Until the
neighbours' cache entries expire they keep sending to the old MAC, so ADD
announces every address itself (as moby's libnetwork does): for IPv4 a
gratuitous ARP request (RFC 5227 announcement), for IPv6 an unsolicited
neighbour advertisement with the Override flag (RFC 4861 7.2.6). Linux
updates an existing entry from either; it does not create new entries from
them (arp_accept, accept_untracked_na), so only stale caches change.

Rounds: ADD sends the first one itself; the rest come from a detached
process (see `_detach`) so that ADD returns at once. In plugin mode that is
a forked sender; a served request process (serve.py) is already a process of
its own, so it sends the rest itself once its request is answered
(`keep_rest_here`), which saves ADD two forks of a large process. Either way
the sender runs unprivileged (see `_drop_privileges`). Before every round that process re-reads the link
by ifindex and stops if it is gone or its MAC has changed; DEL and GC end it
early with SIGTERM, but only once the attachment's sender lock (a POSIX lock
on a root-only file, taken before it dropped root) shows that the pid in the
state record really is that sender (see `cancel`).

The frame builders at the top are pure and tested byte by byte.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import fcntl
import ipaddress
import os
import signal
import socket
import struct
import time
from collections.abc import Iterable
from typing import Any

from . import links, log, netns, senders
from .netlink import NetlinkError, Socket
from .senders import start_time

ETH_P_IP, ETH_P_ARP, ETH_P_IPV6 = 0x0800, 0x0806, 0x86DD
ARPHRD_ETHER = 1
ARPOP_REQUEST = 1
BROADCAST_MAC = b"\xff" * 6
ALL_NODES = ipaddress.IPv6Address("ff02::1")
ALL_NODES_MAC = b"\x33\x33\x00\x00\x00\x01"  # RFC 2464: 33:33 + low 32 bits of ff02::1
IPPROTO_ICMPV6 = 58
ND_NEIGHBOR_ADVERT = 136
ND_OPT_TARGET_LINKADDR = 2
NA_FLAG_ROUTER, NA_FLAG_SOLICITED, NA_FLAG_OVERRIDE = 0x80, 0x40, 0x20
HOP_LIMIT = 255  # RFC 4861: receivers drop ND messages with any other hop limit


# ------------------------------------------------------------------ frames
def mac_bytes(mac: str) -> bytes:
    """'02:42:ac:11:00:02' -> 6 bytes."""
    octets = bytes(int(o, 16) for o in mac.split(":"))
    if len(octets) != 6:
        raise ValueError(f"not an Ethernet MAC address: {mac!r}")
    return octets


def arp_announcement(mac: bytes, address: ipaddress.IPv4Address) -> bytes:
    """28-byte ARP payload: a request whose sender and target IP are both `address`
    (the kernel adds the Ethernet header, sent to ff:ff:ff:ff:ff:ff).

    A request rather than a reply: every stack takes a broadcast request as an
    update of the sender's entry, and RFC 5227 calls it an ARP announcement.
    """
    ip = address.packed
    return struct.pack("!HHBBH6s4s6s4s", ARPHRD_ETHER, ETH_P_IP, 6, 4, ARPOP_REQUEST, mac, ip, b"\0" * 6, ip)


def neighbour_advertisement(mac: bytes, address: ipaddress.IPv6Address) -> bytes:
    """32-byte ICMPv6 body: NA for `address` with Override set (Router and
    Solicited clear) and a target link-layer address option carrying `mac`.
    The checksum field is 0 (see `ipv6_packet`)."""
    header = struct.pack("!BBHB3x", ND_NEIGHBOR_ADVERT, 0, 0, NA_FLAG_OVERRIDE)
    option = struct.pack("!BB6s", ND_OPT_TARGET_LINKADDR, 1, mac)  # length in units of 8 octets
    return header + address.packed + option


def icmpv6_checksum(src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, message: bytes) -> int:
    """RFC 4443 2.3: one's complement sum over the pseudo-header and the message."""
    data = src.packed + dst.packed + struct.pack("!I3xB", len(message), IPPROTO_ICMPV6) + message
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv6_packet(src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, icmp: bytes) -> bytes:
    """IPv6 header (hop limit 255, no flow label) + the ICMPv6 message with its checksum set."""
    icmp = icmp[:2] + struct.pack("!H", icmpv6_checksum(src, dst, icmp[:2] + b"\0\0" + icmp[4:])) + icmp[4:]
    header = struct.pack("!IHBB16s16s", 6 << 28, len(icmp), IPPROTO_ICMPV6, HOP_LIMIT, src.packed, dst.packed)
    return header + icmp


def unsolicited_na(mac: bytes, address: ipaddress.IPv6Address) -> bytes:
    """The whole IPv6 packet announcing `address`: from itself to ff02::1."""
    return ipv6_packet(address, ALL_NODES, neighbour_advertisement(mac, address))


def _sockaddr_ll(ifindex: int, protocol: int, dest: bytes) -> bytes:
    """struct sockaddr_ll (20 bytes); Python's own AF_PACKET addresses take a
    name, and the interface is known here by index only."""
    return struct.pack("=HHiHBB8s", socket.AF_PACKET, socket.htons(protocol), ifindex, ARPHRD_ETHER, 0, len(dest), dest)


# ---------------------------------------------------------------- settings
@dataclasses.dataclass(frozen=True)
class Plan:
    """What to announce, where, how often."""

    ifindex: int
    mac: str
    ipv4: tuple[ipaddress.IPv4Address, ...]
    ipv6: tuple[ipaddress.IPv6Address, ...]
    count: int
    interval_ms: int

    @classmethod
    def of(cls, ifindex: int, mac: str, addresses: Iterable[Any], count: int, interval_ms: int) -> Plan:
        ips = [ipaddress.ip_address(a) for a in addresses]
        return cls(
            ifindex,
            mac.lower(),
            tuple(a for a in ips if isinstance(a, ipaddress.IPv4Address)),
            tuple(a for a in ips if isinstance(a, ipaddress.IPv6Address)),
            count,
            interval_ms,
        )

    @property
    def empty(self) -> bool:
        return self.count <= 0 or not (self.ipv4 or self.ipv6)


# ---------------------------------------------------------------- sending
_libc = ctypes.CDLL(None, use_errno=True)
_sendto = _libc.sendto
_sendto.restype = ctypes.c_ssize_t
_sendto.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
_prctl = _libc.prctl
_prctl.restype = ctypes.c_int
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


class Announcer:
    """Sockets bound to the netns that was current at creation (the pod's): a
    packet socket that sends the frames, and a netlink socket to re-read the
    link. Both stay usable in a forked child.

    ARP and NA both go out through the packet socket, addressed by ifindex,
    with the kernel adding only the Ethernet header. An ICMPv6 raw socket
    would route the NA, and right after the link comes up the kernel has not
    yet added the interface's ff00::/8 multicast route (that waits for the
    asynchronous operstate change): the lookup then falls to the pod's
    default route and the first NA leaves as a unicast frame to the gateway's
    MAC (seen in testing). A frame built here does not depend on routing.
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        mac = mac_bytes(plan.mac)
        self._frames = [(ETH_P_ARP, BROADCAST_MAC, arp_announcement(mac, a), f"ARP for {a}") for a in plan.ipv4]
        self._frames += [(ETH_P_IPV6, ALL_NODES_MAC, unsolicited_na(mac, a), f"NA for {a}") for a in plan.ipv6]
        self._rtnl = Socket()
        try:
            # Protocol 0: this socket receives nothing; each frame's
            # ethertype comes from its sendto address.
            self._packet = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, 0)
        except BaseException:
            self._rtnl.close()
            raise

    def fds(self) -> list[int]:
        return [self._rtnl._sock.fileno(), self._packet.fileno()]

    def close(self) -> None:
        self._packet.close()
        self._rtnl.close()

    def link_unchanged(self) -> bool:
        """The interface still exists (same ifindex) with the same MAC."""
        try:
            link = links.get(self._rtnl, index=self.plan.ifindex)
        except NetlinkError:
            return False
        return link is not None and link.mac == self.plan.mac

    def send_round(self) -> list[str]:
        """One announcement per address; the failures, described (never raises)."""
        failures = []
        for protocol, dest, frame, what in self._frames:
            addr = _sockaddr_ll(self.plan.ifindex, protocol, dest)
            sent = _sendto(self._packet.fileno(), frame, len(frame), 0, addr, len(addr))
            if sent < 0:
                failures.append(f"{what}: {os.strerror(ctypes.get_errno() or errno.EIO)}")
            elif sent != len(frame):
                failures.append(f"{what}: short write: len:{len(frame)} sent:{sent}")
        return failures


# ------------------------------------------------------------ the sender
def announce(pod_fd: int, plan: Plan, lock_path: str) -> dict[str, int] | None:
    """First round now, the remaining rounds from a detached process.

    Returns {"pid", "start"} of that process for the state record (None when
    nothing is left to send); `lock_path` is the attachment's sender lock
    file (see `cancel`). Never raises: a failure to announce is logged
    and ADD goes on, because the pod's network is already complete and
    correct; announcements only hurry neighbours' caches, which converge on
    their own when the stale entries expire. Failing the ADD (and tearing a
    working pod down) over a best-effort hint would be the worse outcome.
    """
    if plan.empty:
        return None
    try:
        with netns.entered(pod_fd):
            announcer = Announcer(plan)
    except OSError as e:
        log.get().warning("cannot announce addresses of ifindex %d: %s", plan.ifindex, e.strerror or e)
        return None
    kept = False
    try:
        failures = announcer.send_round()
        for f in failures:
            log.get().warning("unsolicited announcement failed: %s", f)
        if plan.count <= 1:
            return None
        try:
            if _rest_here is not None:
                kept = True
                return _keep(announcer, time.monotonic(), lock_path)
            return _detach(announcer, time.monotonic(), lock_path)
        except OSError as e:
            kept = False
            log.get().warning("cannot start the announcement sender: %s", e.strerror or e)
            return None
    finally:
        if not kept:
            # The parent's copies; a forked sender has its own. (Closing the last
            # reference to a packet socket waits for an RCU grace period, about
            # 10 ms: with a sender running, the sender pays it, in the background.)
            announcer.close()


@dataclasses.dataclass
class _Rest:
    """The rounds after the first, kept for this process to send after its request is answered."""

    announcer: Announcer
    first_round: float
    lock_fd: int  # the sender lock, held by this process


# Set once, before the command runs, in a served request process (keep_rest_here);
# None in plugin mode. The process is single-threaded and runs one request.
_rest_here: list[_Rest] | None = None


def keep_rest_here() -> None:
    """This process sends the later rounds itself, after its request is answered (`send_rest_here`).

    For a served request process: it is already a process apart from the
    plugin's caller, and the server answers the client before it ends, so
    continuing in it replaces the detached sender's double fork. Until the
    answer it is still the request's process, killed with it (the runtime's
    kill of the plugin, or the server's end): then the sender is gone with
    the ADD the runtime gave up on, whose DEL finds no sender to stop.
    """
    global _rest_here
    _rest_here = []


def _keep(announcer: Announcer, first_round: float, lock_path: str) -> dict[str, int]:
    """The sender is this process: take the sender lock now, while root, and keep the rest for later."""
    assert _rest_here is not None
    lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    try:
        fcntl.lockf(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(lock_fd)
        raise
    # A DEL that stops this sender (SIGTERM) before the answer must not cut the ADD short:
    # the signal waits until the request is answered (see send_rest_here).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    _rest_here.append(_Rest(announcer, first_round, lock_fd))
    pid = os.getpid()
    start = start_time(pid)
    return {"pid": pid, "start": start if start is not None else -1}


def _drop_rest() -> bool:
    """Forget the kept rounds (the ADD is rolled back): sockets closed, sender lock released."""
    if not _rest_here:
        return False
    rest = _rest_here.pop()
    rest.announcer.close()
    os.close(rest.lock_fd)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    return True


def kept_rest() -> bool:
    """Whether this process kept later rounds to send (see keep_rest_here)."""
    return bool(_rest_here)


def send_rest_here() -> None:
    """In a served request process whose request is answered: send the kept rounds, then exit.

    The caller (serve.py) has made the process independent of the server first."""
    assert _rest_here
    rest = _rest_here.pop()
    keep = [*rest.announcer.fds(), rest.lock_fd]
    _sender_main(rest.announcer, rest.first_round, keep, rest.lock_fd, None)  # never returns


def _detach(announcer: Announcer, first_round: float, lock_path: str) -> dict[str, int]:
    """Fork the sender of the remaining rounds, fully detached from the plugin.

    Double fork: the intermediate child exits at once (the plugin reaps it
    with waitpid, so no zombie stays), and the sender, in its own session, is
    re-parented to init. The sender must not keep the plugin's stdout or
    stderr: runtimes read the plugin's stdout until EOF, so an inherited copy
    would make ADD last as long as the sender. It also must not keep the
    state lock or any other descriptor, so it closes everything but its two
    sockets and its sender lock file. A fork rather than a re-exec: starting a new interpreter (or
    unpacking the bundled executable) costs far more than the fork.

    Its sockets hold a reference to the pod netns: a netns removed without a
    DEL lives on, with its interfaces, until the sender ends (at most
    (3 - 1) x 2 s after the first round).

    The sender itself reports its pid on the pipe, once it holds the sender
    lock and has dropped its privileges: a recorded pid is always that of a
    sender that can be verified and runs unprivileged.
    """
    lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    try:
        return _fork_sender(announcer, first_round, lock_fd)
    finally:
        os.close(lock_fd)  # this process never locked it: the sender's lock stays


def _fork_sender(announcer: Announcer, first_round: float, lock_fd: int) -> dict[str, int]:
    keep = [*announcer.fds(), lock_fd]
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:  # intermediate
        code = 0
        try:
            os.close(rd)
            os.setsid()
            if os.fork() == 0:
                _sender_main(announcer, first_round, keep, lock_fd, wr)  # never returns
        except BaseException:  # noqa: BLE001 - a forked child must never return into the caller
            code = 1
        finally:
            os._exit(code)
    os.close(wr)
    try:
        data = b""
        while len(data) < 4:
            chunk = os.read(rd, 4 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(rd)
        with contextlib.suppress(ChildProcessError):  # SIGCHLD ignored: the kernel reaped it
            os.waitpid(pid, 0)
    if len(data) != 4:
        raise OSError(errno.ECHILD, "the announcement sender did not start")
    (sender_pid,) = struct.unpack("=i", data)
    start = start_time(sender_pid)
    return {"pid": sender_pid, "start": start if start is not None else -1}


def _sender_main(announcer: Announcer, first_round: float, keep: list[int], lock_fd: int, ready: int | None) -> None:
    """The detached sender's whole life. It touches only its sockets, the
    clock and sleep: no logging, locks or imports inherited in unknown states
    (in tests this is a fork of the test process), and ends with os._exit.

    First, while still root: the sender lock (proof for DEL/GC that this pid
    is this attachment's sender; a served request process took it already,
    `ready` None), then privileges dropped for good and a deadline armed;
    only then is its pid reported (`ready`). Any failure there ends it
    before it sends anything."""
    try:
        with contextlib.suppress(ValueError):  # only the main thread may; after fork this one is
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        plan = announcer.plan
        if ready is not None:
            fcntl.lockf(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _drop_privileges()
        # Hard deadline: the last round is due (count - 1) x interval after the
        # first; SIGALRM (default action: terminate) ends it a little later whatever happens.
        signal.alarm(int((plan.count - 1) * plan.interval_ms / 1000) + 3)
        if ready is not None:
            os.write(ready, struct.pack("=i", os.getpid()))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # a DEL's stop, held back until now (_keep)
        _detach_fds(keep)
        interval = plan.interval_ms / 1000.0
        for n in range(1, plan.count):
            delay = first_round + n * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if not announcer.link_unchanged():
                break  # interface gone or replaced: its addresses are not ours to announce
            announcer.send_round()  # a failed send is not retried; the next round may still work
    except BaseException:  # noqa: BLE001
        pass
    finally:
        os._exit(0)


NOBODY = 65534  # uid and gid of the sender (Debian's nobody / nogroup)
_PR_SET_NO_NEW_PRIVS = 38


def _drop_privileges() -> None:
    """Leave root for good: no supplementary groups, gid and uid nobody (real,
    effective and saved, so all capabilities go with them), no_new_privs (no
    exec can give any back), cwd "/" (no hold on the caller's directory).

    Its open sockets need nothing: sending on a packet socket was checked
    (CAP_NET_RAW) when it was opened, and reading a link (RTM_GETLINK) needs
    no capability. The sender lock is a POSIX lock on an open descriptor and
    stays held. Not being dumpable after the uid change, the process cannot
    be traced or have its descriptors taken through /proc by another process
    of uid nobody.
    """
    os.chdir("/")
    if os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
    if _prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


def _detach_fds(keep: list[int]) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, _max_fd())


def _max_fd() -> int:
    try:
        return max(os.sysconf("SC_OPEN_MAX"), 1024)
    except (ValueError, OSError):
        return 1 << 16


# ------------------------------------------------------------ cancelling
def cancel(record: Any, lock_path: str) -> bool:
    """Stop the sender a state record names, if it still runs and really is the sender of
    this attachment (it holds `lock_path`'s lock); True if it was stopped."""
    sender = senders.recorded(record)
    if sender is None:
        return False
    if sender[0] == os.getpid():
        return _drop_rest()  # this served request process is the sender: its ADD is rolled back
    # A pidfd pins the process before it is checked: if the sender exits and its pid is
    # reused between the check and the signal, the signal goes nowhere instead of to the new owner.
    try:
        pidfd = os.pidfd_open(sender[0])
    except OSError:
        return False  # gone already
    try:
        pid = senders.running(record, lock_path)
        if pid is None:
            return False  # finished, or the pid is someone else's
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)
    # Wait (briefly) until it is gone, so nothing is sent after DEL returns:
    # the lock goes when its descriptors close, as it exits.
    deadline = time.monotonic() + 0.5
    while senders.lock_holder(lock_path) == pid and time.monotonic() < deadline:
        time.sleep(0.002)
    return True
