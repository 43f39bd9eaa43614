"""`nsveth serve`: a warm server that runs plugin requests without a Python start-up each.

The server imports everything the commands use (the rtnetlink message
classes, jsonschema with the schema's validator built, every nsveth module)
once, then serves plugin-mode clients (client.py) on a Unix socket, one
process per request forked from itself: a request can never corrupt another
or the server. The next request's process is forked ahead of it (the spare,
see Server._fork_spare), so not even the fork is on a request's path. The
wire protocol is docs/serve-protocol.md.

The request's process becomes the caller: it enters the caller's mount and
network namespaces (in that order: setns into a mount namespace needs a
single-threaded process, which a fork of this single-threaded server is),
changes to its working directory, takes its stdin, stdout and stderr, its
umask and its environment, and then runs exactly what plugin mode runs
in-process (main.plugin). It dies with the server (PR_SET_PDEATHSIG) and is
killed the moment its client's connection hangs up (the runtime killed the
plugin). It reports its exit status to the server on a socket pair of its
own (`report`), having let go of the caller's descriptors, and the server
answers the client at once. An ADD's process then goes on as the sender of
the later announcement rounds (advertise.keep_rest_here): in its own session,
no longer dying with the server, as a forked sender outlives an in-process
plugin.

Only root peers with the server's privileges (SO_PEERCRED uid 0, the same user
namespace, every capability the server has) are served. The
socket's directory must pass the runtime dir rule (state._secure_dir: owned
by this user, writable by no one else), else the server refuses to start.
Anything malformed on a connection closes that connection only.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import ctypes
import dataclasses
import errno
import gc
import os
import resource
import select
import signal
import socket
import stat
import struct
import sys
import time
import types
from collections.abc import MutableMapping

from . import client
from .errors import CNIError

CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
PR_SET_PDEATHSIG = 1
REQUEST_DEADLINE = 10.0  # seconds a connection may take to send its request after the hello
MAX_CONNECTIONS = 256
SETUP_FAILED = 255  # the request's process could not become the caller ("F" sent; nothing ran)
_CMSG_SPACE = socket.CMSG_SPACE(8 * 4)  # room for more fds than allowed, to see (and close) extras

_libc = ctypes.CDLL(None, use_errno=True)


def log(msg: str) -> None:
    try:
        os.write(2, f"nsveth serve[{os.getpid()}]: {msg}\n".encode(errors="backslashreplace"))
    except OSError:
        pass  # a lost log reader must not stop the server


def main(argv: list[str], env: MutableMapping[str, str]) -> int:
    parser = argparse.ArgumentParser(prog="nsveth serve", description="Serve plugin requests from a warm process.")
    parser.add_argument("--socket", default=client.DEFAULT_SOCKET, help=f"socket path (default {client.DEFAULT_SOCKET})")
    parser.add_argument("--idle-exit", type=float, default=0, metavar="SECONDS", help="exit after this long without requests")
    opts = parser.parse_args(argv)
    for fd in (0, 1, 2):  # a descriptor received later must never land on a standard one
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)
    try:
        listener, owned = _listener(opts.socket, env)
    except (OSError, CNIError) as e:
        log(f"cannot serve: {getattr(e, 'msg', None) or e}")
        return 1
    # Each connection holds up to 7 descriptors (its socket and the caller's 6): with the usual
    # soft limit of 1024, MAX_CONNECTIONS pending clients would run the server out of them.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    warm_up()
    log(f"serving {owned or _name(listener)} (build {client.build_id().decode(errors='replace')})")
    return Server(listener, owned, opts.idle_exit).run()


# ------------------------------------------------------------------ start-up
def _listener(path: str, env: MutableMapping[str, str]) -> tuple[socket.socket, str | None]:
    """The listening socket: systemd's (LISTEN_FDS), else bound at `path`. Also the path this
    server created (removed when it retires), None for an inherited socket."""
    inherited = _activated(env)
    if inherited is not None:
        _check_dir(_name(inherited))
        return inherited, None
    _check_dir(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        if client.listening(path):
            raise OSError(errno.EADDRINUSE, f"another server is serving {path}")
        os.unlink(path)  # a socket left by a server that died
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # root only from the moment it exists
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(128)
    return sock, path


def _activated(env: MutableMapping[str, str]) -> socket.socket | None:
    """The socket systemd (or systemd-socket-activate) passed as fd 3, per sd_listen_fds(3);
    the variables go from `env` (os.environ), so nothing the server starts inherits them."""
    if env.get("LISTEN_PID") != str(os.getpid()):
        return None
    count = env.get("LISTEN_FDS", "0")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(name, None)
    if count != "1":
        raise OSError(errno.EINVAL, f"expected one socket from LISTEN_FDS, got {count}")
    sock = socket.socket(fileno=3)
    os.set_inheritable(3, False)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise OSError(errno.EINVAL, "the activated socket is not a Unix stream socket")
    return sock


def _name(sock: socket.socket) -> str:
    name = sock.getsockname()
    return name if isinstance(name, str) else repr(name)


def _check_dir(path: str) -> None:
    from . import state

    if not path.startswith("/"):
        raise OSError(errno.EINVAL, f"socket path {path!r} is not absolute")
    state._secure_dir(os.path.dirname(path), ancestors=True)  # the runtimeDir rule: it and its parents root-owned, writable by no one else


def warm_up() -> None:
    """Import and exercise everything a request uses, so each forked request only does its work."""
    import inspect  # noqa: F401 - the real modules, not main.py's deferred stand-ins
    import traceback  # noqa: F401

    from . import (  # noqa: F401
        addresses,
        advertise,
        attachment,
        bridge,
        check,
        commands,
        config,
        crashpoints,
        dispatch,
        ipam,
        links,
        main,
        masq,
        netlink,
        netns,
        procsys,
        ptp,
        request,
        result,
        routes,
        schema,
        state,
        sysctl,
        timing,
        versions,
    )

    schema.warm_up()
    _compile_netlink_tables(netlink)
    sock = netlink.Socket()
    try:
        links.dump(sock)  # decodes every link kind here once
    finally:
        sock.close()
    gc.collect()
    gc.freeze()  # the forked requests then share these pages instead of copying them for the collector


def _compile_netlink_tables(netlink: types.ModuleType) -> None:
    """pyroute2 compiles a message class's attribute table when the class is first instantiated
    and keeps it on the class: done here, once, instead of in every forked request that encodes
    a message (veth peer, address, route...) the warm-up's link dump never decoded."""
    from pyroute2.netlink import nlmsg_base

    roots = [netlink.ifinfmsg, netlink.ifaddrmsg, netlink.rtmsg, netlink.ndmsg]
    todo: list[type] = [v for root in roots for v in vars(sys.modules[root.__module__]).values() if isinstance(v, type)]
    seen: set[type] = set()
    while todo:
        cls = todo.pop()
        if cls in seen or not issubclass(cls, nlmsg_base):
            continue
        seen.add(cls)
        with contextlib.suppress(Exception):  # a class that cannot stand alone is compiled by its first real use
            cls()
        for name in dir(cls):
            value = getattr(cls, name, None)
            for item in value.values() if isinstance(value, dict) else (value,):
                if isinstance(item, type) and issubclass(item, nlmsg_base):
                    todo.append(item)


# ------------------------------------------------------------------ serving
@dataclasses.dataclass
class Conn:
    """One client connection: its request as it arrives, then the process running it."""

    sock: socket.socket
    peer_pid: int
    deadline: float
    buf: bytearray = dataclasses.field(default_factory=bytearray)
    fds: list[int] = dataclasses.field(default_factory=list)
    child: int = 0
    pidfd: int = -1
    report: socket.socket | None = None  # the server's end of the request process's status channel
    learn: bool = False  # its process is to report the pages it writes (Server.hot)
    started: float = 0.0
    what: str = ""
    gone: bool = False


@dataclasses.dataclass
class Spare:
    """A request process forked ahead of its request (see Server._fork_spare)."""

    pid: int
    pidfd: int
    ctl: socket.socket  # the server's end: the request goes to the spare through it
    born: float


class Server:
    def __init__(self, listener: socket.socket, owned: str | None, idle_exit: float) -> None:
        self.listener: socket.socket | None = listener
        self.owned = owned
        self.owned_ino = os.stat(owned).st_ino if owned else None
        self.idle_exit = idle_exit
        self.build = client.build_id()
        self.pid = os.getpid()
        self.own_mnt = _own_ns("mnt")  # the mount namespace its request processes start in
        self.conns: dict[int, Conn] = {}  # by connection fd
        self.children: dict[int, Conn] = {}  # by pidfd
        self.reports: dict[int, Conn] = {}  # by report socket fd
        self.answered: dict[int, int] = {}  # pidfd -> pid: processes that reported (senders now), still to reap
        self.spare: Spare | None = None
        # Pages an ADD's process writes (see _written_pages): each spare writes them while it
        # waits (_prefault), so its request does not stop for those copy-on-write faults.
        self.hot: list[tuple[int, int]] | None = None
        self.spare_lost = 0.0  # when a spare last died before it got a request (no new one for a second)
        self.stopping = ""  # why the server is ending, once it is
        self.last_active = time.monotonic()
        self.poll = select.poll()
        listener.setblocking(False)
        self.poll.register(listener.fileno(), select.POLLIN)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.poll.register(self.wake_r, select.POLLIN)
        signal.set_wakeup_fd(self.wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = self.stopping or f"signal {signal.Signals(signum).name}"

    def run(self) -> int:
        self._fork_spare()
        while True:
            if self.stopping and self.listener is not None:
                log(f"stopping ({self.stopping}) after {len(self.children)} running request(s)")
                self._close_listener()
                self._end_spare()
            if self.listener is None and not self.conns:
                return 0
            now = time.monotonic()
            if self.idle_exit and not self.conns and now - self.last_active >= self.idle_exit:
                self.stopping = f"idle for {self.idle_exit:g} s"
                continue
            for conn in [c for c in self.conns.values() if not c.child and c.deadline <= now]:
                self._drop(conn, "no complete request in time")
            timeout = min([c.deadline for c in self.conns.values() if not c.child] + [now + 3600.0])
            if self.idle_exit and not self.conns:
                timeout = min(timeout, self.last_active + self.idle_exit)
            for fd, _events in self.poll.poll(max(0, int((timeout - now) * 1000)) + 1):
                if self.listener is not None and fd == self.listener.fileno():
                    self._accept()
                elif fd == self.wake_r:
                    while True:
                        try:
                            if not os.read(self.wake_r, 64):
                                break
                        except BlockingIOError:
                            break
                elif self.spare is not None and fd == self.spare.pidfd:
                    self._spare_died()
                elif fd in self.children:
                    self._reap(self.children[fd])
                elif fd in self.reports:
                    self._reported(self.reports[fd])
                elif fd in self.answered:
                    self._reap_answered(fd)
                elif fd in self.conns:
                    conn = self.conns[fd]
                    try:
                        self._readable(conn)
                    except Exception as e:  # noqa: BLE001 - a bug on one connection closes that connection only
                        if not conn.child:
                            self._drop(conn, f"internal error: {type(e).__name__}: {e}")

    def _close_listener(self) -> None:
        assert self.listener is not None
        self.poll.unregister(self.listener.fileno())
        if self.owned:
            try:
                if os.stat(self.owned).st_ino == self.owned_ino:  # still ours, not a successor's
                    os.unlink(self.owned)
            except OSError:
                pass
        self.listener.close()
        self.listener = None

    def _accept(self) -> None:
        assert self.listener is not None
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            log(f"accept failed: {e}")
            return
        self.last_active = time.monotonic()
        sock.setblocking(False)
        pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        refusal = f"uid {uid} is not root" if uid != 0 else _less_privileged(pid)
        if refusal is not None:
            log(f"refused pid {pid}: {refusal}")
            _send(sock, client.pack(b"D", b"only root with the server's privileges is served"))
            sock.close()
            return
        if len(self.conns) >= MAX_CONNECTIONS:
            log(f"refused pid {pid}: {MAX_CONNECTIONS} connections open")
            sock.close()
            return
        if not _send(sock, client.pack(b"H", client.PROTOCOL + b"\0" + self.build)):
            sock.close()
            return
        conn = Conn(sock, pid, time.monotonic() + REQUEST_DEADLINE)
        self.conns[sock.fileno()] = conn
        self.poll.register(sock.fileno(), select.POLLIN)

    def _readable(self, conn: Conn) -> None:
        if conn.child:
            # A running request's client sends nothing more: this is its hangup
            # (the runtime killed the plugin) or a protocol violation. Either
            # way the request dies now, as an in-process plugin would have.
            conn.gone = True
            self.poll.unregister(conn.sock.fileno())
            try:
                os.kill(conn.child, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return
        try:
            data, ancillary, flags, _ = conn.sock.recvmsg(65536, _CMSG_SPACE, socket.MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._drop(conn, f"receive failed: {e}")
            return
        fds = _fds(ancillary)
        if fds and (conn.buf or conn.fds):
            conn.fds += fds
            self._drop(conn, "descriptors after the start of the request")
            return
        conn.fds += fds
        if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
            self._drop(conn, "too many descriptors")
            return
        if not data:
            self._drop(conn, "hung up before a complete request")
            return
        conn.buf += data
        if len(conn.buf) < 5:
            return
        kind, size = struct.unpack("!cI", conn.buf[:5])
        if kind not in (b"R", b"S") or size > client.MAX_PAYLOAD:
            self._drop(conn, f"not a request (type {kind!r}, {size} bytes)")
            return
        if len(conn.buf) < 5 + size:
            return
        if len(conn.buf) > 5 + size:
            self._drop(conn, "data after the request")
            return
        payload = bytes(conn.buf[5:])
        if kind == b"S":
            if not 0 < size <= 256 or payload == self.build:
                self._drop(conn, "a malformed notice of another build")
                return
            if not self.stopping:
                self.stopping = f"a client of another build ({payload[:80].decode(errors='replace')})"
            self._drop(conn, "")
            return
        if len(conn.fds) != client.NFDS:
            self._drop(conn, f"{len(conn.fds)} descriptors instead of {client.NFDS}")
            return
        try:
            umask, env = _decode(payload)
        except ValueError as e:
            self._drop(conn, f"malformed request: {e}")
            return
        self._start(conn, umask, env, payload)

    def _start(self, conn: Conn, umask: int, env: dict[str, str], payload: bytes) -> None:
        conn.what = f"{env.get('CNI_COMMAND', '-') or '-'} {env.get('CNI_CONTAINERID') or '-'}/{env.get('CNI_IFNAME') or '-'}"
        conn.started = time.monotonic()
        # The first ADD's process reports the pages it writes (an ADD writes most of what other commands do).
        conn.learn = self.hot is None and env.get("CNI_COMMAND") == "ADD"
        t0 = time.monotonic_ns()
        if not self._hand_to_spare(conn, payload, t0):
            try:
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
            except OSError as e:
                _send(conn.sock, client.pack(b"F", f"socketpair: {e}".encode()))
                self._drop(conn, f"cannot make a status channel: {e}")
                return
            try:
                pid = os.fork()
            except OSError as e:
                ours.close()
                theirs.close()
                _send(conn.sock, client.pack(b"F", f"fork: {e}".encode()))
                self._drop(conn, f"cannot fork: {e}")
                return
            if pid == 0:
                self._leave_server([conn.sock.fileno(), theirs.fileno(), *conn.fds])
                self._become_request(conn.sock, theirs, conn.fds, umask, env, t0, "fork", conn.learn)  # never returns
            theirs.close()
            pidfd = _watch(pid)
            if pidfd is None:
                ours.close()
                _send(conn.sock, client.pack(b"F", b"cannot watch the request's process"))
                self._drop(conn, "cannot watch the request's process")
                return
            conn.child, conn.report, conn.pidfd = pid, ours, pidfd
        for fd in conn.fds:
            os.close(fd)
        conn.fds = []
        self.children[conn.pidfd] = conn
        self.poll.register(conn.pidfd, select.POLLIN)
        assert conn.report is not None
        conn.report.setblocking(False)
        self.reports[conn.report.fileno()] = conn
        self.poll.register(conn.report.fileno(), select.POLLIN)

    # ------------------------------------------------------- the spare
    # A request process is forked before its request arrives, so the fork and
    # leaving the server's state (~2 ms) are not on a request's path. It waits
    # on a socket pair for its connection, the caller's descriptors and the
    # request (in a memfd: no size limit, no blocking of the server), then runs
    # it exactly as a request process forked for it would.
    def _fork_spare(self) -> None:
        if self.spare is not None or self.stopping or time.monotonic() - self.spare_lost < 1.0:
            return
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        except OSError as e:
            log(f"cannot make a spare request process: {e}")
            self.spare_lost = time.monotonic()
            return
        try:
            pid = os.fork()
        except OSError as e:
            log(f"cannot fork a spare request process: {e}")
            ours.close()
            theirs.close()
            self.spare_lost = time.monotonic()
            return
        if pid == 0:
            self._leave_server([theirs.fileno()])
            _prefault(self.hot or [])
            self._spare_main(theirs)  # never returns
        theirs.close()
        pidfd = _watch(pid)
        if pidfd is None:
            ours.close()
            self.spare_lost = time.monotonic()
            return
        self.spare = Spare(pid, pidfd, ours, time.monotonic())
        self.poll.register(self.spare.pidfd, select.POLLIN)

    def _hand_to_spare(self, conn: Conn, payload: bytes, t0: int) -> bool:
        """Give the request to the spare; False if there is none or it cannot take it (then fork)."""
        spare, self.spare = self.spare, None
        if spare is None:
            return False
        self.poll.unregister(spare.pidfd)
        memfd = -1
        try:
            memfd = os.memfd_create("nsveth-request", os.MFD_CLOEXEC)
            os.write(memfd, payload)  # a memfd takes it all at once
            fds = struct.pack(f"{2 + len(conn.fds)}i", conn.sock.fileno(), memfd, *conn.fds)
            spare.ctl.sendmsg([_HANDOFF.pack(t0, conn.learn)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        except OSError as e:
            log(f"cannot hand a request to the spare pid {spare.pid}: {e}")
            self._kill_spare(spare)
            return False
        finally:
            if memfd >= 0:
                os.close(memfd)
        # The same socket pair carries the request's status back (see _reported).
        conn.child, conn.pidfd, conn.report = spare.pid, spare.pidfd, spare.ctl
        return True

    def _spare_died(self) -> None:
        spare, self.spare = self.spare, None
        assert spare is not None
        self.poll.unregister(spare.pidfd)
        spare.ctl.close()
        _, wstatus, _ = os.wait4(spare.pid, 0)
        os.close(spare.pidfd)
        self.spare_lost = time.monotonic()
        log(f"the spare request process {spare.pid} ended before a request (exit {os.waitstatus_to_exitcode(wstatus)})")

    def _end_spare(self) -> None:
        spare, self.spare = self.spare, None
        if spare is not None:
            self.poll.unregister(spare.pidfd)
            self._kill_spare(spare)

    def _kill_spare(self, spare: Spare) -> None:
        spare.ctl.close()
        try:
            os.kill(spare.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.wait4(spare.pid, 0)
        os.close(spare.pidfd)

    def _spare_main(self, ctl: socket.socket) -> None:
        """In the spare: wait for a request, then become its process. Never returns."""
        try:
            data, ancillary, flags, _ = ctl.recvmsg(64, _CMSG_SPACE, socket.MSG_CMSG_CLOEXEC)
            fds = _fds(ancillary)
            if len(data) != _HANDOFF.size or len(fds) != 2 + client.NFDS or flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
                os._exit(0)  # the server ended this spare (closed its end) or is not the sender
            t0, learn = _HANDOFF.unpack(data)
            sock_fd, memfd, *caller_fds = fds
            payload = os.pread(memfd, client.MAX_PAYLOAD + 1, 0)
            os.close(memfd)
            umask, env = _decode(payload)
            sock = socket.socket(fileno=sock_fd)
        except BaseException:  # noqa: BLE001 - a forked child must never return into the server loop
            os._exit(SETUP_FAILED)
        self._become_request(sock, ctl, caller_fds, umask, env, t0, "spare", learn)

    def _reported(self, conn: Conn) -> None:
        """The request's process reports its status (it has let go of the caller's descriptors):
        the client is answered now, whether the process ends now or goes on as a sender."""
        assert conn.report is not None
        try:
            data = conn.report.recv(_REPORT.size + _MAX_HOT * 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if len(data) < _REPORT.size or (len(data) - _REPORT.size) % 16:  # ended without a (sound) report: its exit tells (_reap)
            self._close_report(conn)
            return
        status, cpu_us, children_us, faults = _REPORT.unpack(data[: _REPORT.size])
        if conn.learn and self.hot is None:  # (empty when the kernel does not tell: then learnt as nothing)
            pairs = struct.unpack(f"!{(len(data) - _REPORT.size) // 8}Q", data[_REPORT.size :])
            self.hot = _within(list(zip(pairs[::2], pairs[1::2], strict=True)), _own_writable())
            log(f"learnt {sum(n for _, n in self.hot) // _PAGE} pages a request writes: spares write them ahead")
        del self.children[conn.pidfd]
        self.answered[conn.pidfd] = conn.child  # its pidfd stays registered: reaped when it ends
        reply = client.pack(b"X", struct.pack("!I", status & 0xFFFFFFFF))
        self._answer(conn, f"status {status}", reply, cpu_us / 1000, children_us / 1000, faults)

    def _reap(self, conn: Conn) -> None:
        """The request's process ended; before it reported a status, unless that report is still unread."""
        if conn.report is not None:
            self._reported(conn)  # a report sent just before the end is read first: it is the answer
            if conn.pidfd in self.answered:
                self._reap_answered(conn.pidfd)
                return
        _, wstatus, usage = os.wait4(conn.child, 0)  # its CPU includes the children it waited for (IPAM)
        code = os.waitstatus_to_exitcode(wstatus)
        self.poll.unregister(conn.pidfd)
        del self.children[conn.pidfd]
        os.close(conn.pidfd)
        reply = b""
        if code == SETUP_FAILED:
            outcome = "not started (see the client)"
        elif conn.gone:
            outcome = "killed: the client hung up"
        elif code < 0:
            outcome = f"killed by signal {-code}"
            reply = client.pack(b"K", struct.pack("!I", -code))
        else:
            outcome = f"status {code}"
            reply = client.pack(b"X", struct.pack("!I", code))
        # (Its waited-for children's CPU is in `usage`, not told apart.)
        self._answer(conn, outcome, reply, (usage.ru_utime + usage.ru_stime) * 1000, None, usage.ru_minflt)

    def _answer(self, conn: Conn, outcome: str, reply: bytes, cpu_ms: float, children_ms: float | None, faults: int) -> None:
        self.last_active = time.monotonic()
        ms = (self.last_active - conn.started) * 1000
        # cpu: the request's process and the children it waited for (the IPAM plugin), which `children` tells apart.
        children = f" children={children_ms:.1f}ms" if children_ms is not None else ""
        # Logged before the reply: the client's exit follows it.
        log(f"{conn.what} {outcome} {ms:.1f}ms cpu={cpu_ms:.1f}ms{children} faults={faults} pid={conn.peer_pid}")
        if reply:
            _send(conn.sock, reply)
        self._drop(conn, "")
        self._fork_spare()  # for the next request: after this one, not competing with it for CPU

    def _reap_answered(self, pidfd: int) -> None:
        """A process that reported its status has ended (its sender's rounds, if any, are done)."""
        pid = self.answered.pop(pidfd)
        self.poll.unregister(pidfd)
        with contextlib.suppress(ChildProcessError):
            os.wait4(pid, 0)
        os.close(pidfd)

    def _close_report(self, conn: Conn) -> None:
        if conn.report is not None:
            fd = conn.report.fileno()
            if self.reports.pop(fd, None) is not None:
                self.poll.unregister(fd)
            conn.report.close()
            conn.report = None

    def _drop(self, conn: Conn, why: str) -> None:
        if why:
            log(f"closed a connection of pid {conn.peer_pid}: {why}")
        for fd in conn.fds:
            os.close(fd)
        conn.fds = []
        self._close_report(conn)
        fd = conn.sock.fileno()
        if fd in self.conns:
            del self.conns[fd]
            if not conn.gone:
                self.poll.unregister(fd)
        conn.sock.close()

    # ------------------------------------------------------- the request
    def _leave_server(self, keep: list[int]) -> None:
        """In a child just forked from the server: die with it, default signals, and none of its
        descriptors but the standard ones and `keep` (a child holding another connection open
        would keep its client from seeing the server close it)."""
        try:
            if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != self.pid:
                os._exit(70)  # the server is already gone
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            low = 3
            for fd in sorted(keep):
                os.closerange(low, fd)
                low = max(low, fd + 1)
            os.closerange(low, _max_fd())
        except BaseException:  # noqa: BLE001 - a forked child must never return into the server loop
            os._exit(70)

    def _become_request(
        self,
        sock: socket.socket,
        report: socket.socket,
        fds: list[int],
        umask: int,
        env: dict[str, str],
        t0: int,
        how: str,
        learn: bool,
    ) -> None:
        """In the request's process: become the caller, run the command, report its status
        (`report`, with the pages it wrote when `learn`), then send the announcement's later
        rounds, if the command kept any."""
        status = 70
        try:
            # The server's objects stay frozen: the collector never scans (nor copies) them here.
            from . import advertise, main, timing

            timing.start(env.get("NSVETH_TIMINGS"), (t0, 0))
            timing.mark(how)
            try:
                stdin, stdout, stderr, cwd, net, mnt = fds
                os.umask(umask)
                if _ns_id(mnt) != self.own_mnt:  # entering the namespace it is in would only cost time
                    _setns(mnt, CLONE_NEWNS)
                _setns(net, CLONE_NEWNET)
                os.fchdir(cwd)
                for target, fd in ((0, stdin), (1, stdout), (2, stderr)):
                    os.dup2(fd, target)
                for fd in fds:
                    if fd > 2:
                        os.close(fd)
            except OSError as e:
                sock.setblocking(True)
                _send(sock, client.pack(b"F", f"cannot become the caller: {e}".encode()))
                os._exit(SETUP_FAILED)
            os.environ.clear()
            os.environ.update(env)
            sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own, for its life
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", closefd=False, errors="backslashreplace", buffering=1)  # noqa: SIM115
            timing.mark("become caller")
            sock.setblocking(True)
            sock.sendall(client.pack(b"A"))  # accepted: from here on the request is never re-run
            advertise.keep_rest_here()
            status = main.plugin(env)
            sends_on = status == 0 and advertise.kept_rest()
            if sends_on:  # before the report: a server that ends once it has answered must not take the sender along
                _leave_request()
            _report(sock, report, status, _written_pages() if learn else b"")
            if sends_on:
                advertise.send_rest_here()  # never returns
        except BaseException:  # noqa: BLE001 - a forked child must never return into the server loop
            try:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(status)
        os._exit(status)


_HANDOFF = struct.Struct("!q?")  # to a spare: when the request was handed over (monotonic ns), and whether to learn
# A request process's report: status, CPU microseconds (its own plus its waited-for children's),
# the children's alone, page faults; then, when asked to learn, (address, length) pairs.
_REPORT = struct.Struct("!iqqq")
_MAX_HOT = 8192  # address ranges a report may carry
_PAGE = resource.getpagesize()


def _report(sock: socket.socket, report: socket.socket, status: int, hot: bytes) -> None:
    """Tell the server the status, once nothing of the caller's stays open here: the runtime reads
    the plugin's stdout until EOF, and the client exits when the server answers."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    sock.close()
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    children_s = children.ru_utime + children.ru_stime
    cpu = own.ru_utime + own.ru_stime + children_s
    report.send(_REPORT.pack(status, int(cpu * 1e6), int(children_s * 1e6), own.ru_minflt + children.ru_minflt) + hot)
    report.close()


_PM_PRESENT, _PM_EXCLUSIVE = 1 << 63, 1 << 56  # /proc/PID/pagemap bits (Documentation/admin-guide/mm/pagemap.rst)
_MADV_POPULATE_WRITE = 23  # Linux 5.14+


def _written_pages() -> bytes:
    """The pages of this process's private writable mappings that it alone maps: those it (or the
    server since the fork) wrote, copying them, and those it added. As packed (address, length)
    pairs, at most _MAX_HOT of them; empty if the kernel does not tell."""
    pairs: list[int] = []
    try:
        with open("/proc/self/maps", "rb") as maps, open("/proc/self/pagemap", "rb", buffering=0) as pagemap:
            for line in maps:
                fields = line.split()
                name = fields[5] if len(fields) > 5 else b""
                if not fields[1].startswith(b"rw") or fields[1][3:4] != b"p" or (name.startswith(b"[") and name != b"[heap]"):
                    continue  # not private and writable, or the stack, vvar...
                lo, hi = (int(x, 16) for x in fields[0].split(b"-"))
                entries = array.array("Q")
                entries.frombytes(os.pread(pagemap.fileno(), (hi - lo) // _PAGE * 8, lo // _PAGE * 8))
                start = None
                for n, entry in enumerate([*entries, 0]):
                    written = entry & _PM_PRESENT and entry & _PM_EXCLUSIVE
                    if written and start is None:
                        start = n
                    elif not written and start is not None:
                        pairs += (lo + start * _PAGE, (n - start) * _PAGE)
                        start = None
    except (OSError, ValueError):
        return b""
    pairs = pairs[: 2 * _MAX_HOT]
    return struct.pack(f"!{len(pairs)}Q", *pairs)


def _own_writable() -> list[tuple[int, int]]:
    """(start, end) of this process's private writable mappings: what a process forked from it shares."""
    out = []
    with open("/proc/self/maps", "rb") as maps:
        for line in maps:
            fields = line.split()
            if fields[1].startswith(b"rw") and fields[1][3:4] == b"p":
                lo, hi = (int(x, 16) for x in fields[0].split(b"-"))
                out.append((lo, hi))
    return out


def _within(ranges: list[tuple[int, int]], mappings: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of (address, length) `ranges` inside `mappings` (a request also writes pages it added itself)."""
    out = []
    for address, length in ranges:
        for lo, hi in mappings:
            start, end = max(address, lo), min(address + length, hi)
            if start < end:
                out.append((start, end - start))
    return out


def _prefault(ranges: list[tuple[int, int]]) -> None:
    """Write-fault `ranges` now (a spare, before its request): they are the server's pages a request
    writes, and a request process copies them one fault at a time otherwise. A range this
    process does not map (one a request added) is skipped by the kernel (ENOMEM)."""
    for address, length in ranges:
        _libc.madvise(ctypes.c_void_p(address), ctypes.c_size_t(length), _MADV_POPULATE_WRITE)


def _leave_request() -> None:
    """No longer one of the server's request processes: it outlives the server and is in a
    session of its own, as a sender forked by an in-process plugin is."""
    if _libc.prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG, 0)")
    os.setsid()


def _ns_id(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _own_ns(kind: str) -> tuple[int, int]:
    st = os.stat(f"/proc/self/ns/{kind}")
    return st.st_dev, st.st_ino


def _watch(pid: int) -> int | None:
    """A pidfd of a child just forked; None (the child killed and reaped) when there can be none,
    e.g. with every descriptor in use: a child the server cannot watch would go unsupervised."""
    try:
        return os.pidfd_open(pid)
    except OSError as e:
        log(f"cannot watch process {pid} ({e}): killed")
        os.kill(pid, signal.SIGKILL)  # an unreaped child's pid is not reused meanwhile
        os.waitpid(pid, 0)
        return None


def _max_fd() -> int:
    try:
        return max(os.sysconf("SC_OPEN_MAX"), 1024)
    except (ValueError, OSError):
        return 1 << 16


def _less_privileged(pid: int) -> str | None:
    """Why a uid-0 peer may not have its request run here, None if it may.

    uid 0 is not privilege: a container's root runs with fewer capabilities, a
    seccomp filter and its own user namespace. The request runs with the
    server's capabilities and executes the IPAM plugin the caller names, so a
    caller is served only when it could have run the plugin itself: same user
    namespace, and every capability the server has.
    """
    try:
        if _user_ns(str(pid)) != _user_ns("self"):
            return "it is in another user namespace"
        theirs, ours = _cap_eff(str(pid)), _cap_eff("self")
    except OSError as e:
        return f"its credentials cannot be read: {e.strerror or e}"
    if theirs & ours != ours:
        return f"it lacks capabilities the server has (CapEff {theirs:#x}, the server's {ours:#x})"
    return None


def _user_ns(pid: str) -> tuple[int, int]:
    st = os.stat(f"/proc/{pid}/ns/user")
    return st.st_dev, st.st_ino


def _cap_eff(pid: str) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"CapEff:"):
                return int(line.split()[1], 16)
    raise OSError(0, "no CapEff in its status")


def _setns(fd: int, kind: int) -> None:
    if _libc.setns(fd, kind) != 0:
        code = ctypes.get_errno() or errno.EINVAL
        raise OSError(code, f"setns({'mount' if kind == CLONE_NEWNS else 'network'} namespace): {os.strerror(code)}")


def _send(sock: socket.socket, data: bytes) -> bool:
    """Send a short message without ever blocking the server; False if it did not all go."""
    try:
        return sock.send(data) == len(data)
    except OSError:
        return False


def _fds(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += struct.unpack(f"{len(data) // 4}i", data[: len(data) - len(data) % 4])
    return fds


def _decode(payload: bytes) -> tuple[int, dict[str, str]]:
    if len(payload) < 4:
        raise ValueError("no umask")
    (umask,) = struct.unpack("!I", payload[:4])
    if umask > 0o777:
        raise ValueError(f"umask {umask:o}")
    env: dict[str, str] = {}
    body = payload[4:]
    for entry in body.split(b"\0") if body else []:
        key, sep, value = entry.partition(b"=")
        if not sep or not key:
            raise ValueError("an environment entry without a name")
        env[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    return umask, env
