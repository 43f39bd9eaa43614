"""Plugin mode's first step: hand the request to a warm `nsveth serve`, if one of this build runs.

A runtime starts the plugin once per pod operation; a server that has
already imported everything runs the request in a process forked from it
(see serve.py and docs/serve-protocol.md). This module runs before anything
else in plugin mode, so it imports only what the interpreter has already
loaded (os, sys, _socket, _struct): a client that finds no server must not
have made the in-process path slower.

`handoff(env)` returns the exit status the server reported, or None when the
server did not accept the request, with the reason in `fallback_reason`: the
caller then runs it in-process. Acceptance is the server's "A" message, sent
by the request's process just before it starts the command; before it
nothing of the request has run, so running it in-process is safe. After it the
request is never run again: if the server or the request's process dies
before reporting a status, the client prints a CNI error (code 11, try again
later) and exits 1.
"""

# (No `from __future__ import annotations`: see main.py.)

import _socket
import _struct
import os
import sys

from . import timing

# typing's own TYPE_CHECKING would import typing (start-up time); mypy treats any name so called the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_SOCKET = "/run/nsveth/nsveth.sock"
SOCKET_ENV = "NSVETH_SOCKET"
PROTOCOL = b"nsveth-serve/1"
HELLO_TIMEOUT = 5.0  # seconds to wait for the server's hello; then nothing was sent and in-process is safe
MAX_PAYLOAD = 1 << 20
NFDS = 6  # stdin, stdout, stderr, cwd, net namespace, mount namespace
_HEADER = _struct.Struct("!cI")  # every message: 1-byte type, u32 payload length, payload

fallback_reason = ""


class _Fallback(Exception):
    """Not accepted: run in-process."""


def socket_path(env: "Mapping[str, str]") -> str | None:
    path = env.get(SOCKET_ENV, DEFAULT_SOCKET)
    return None if path in ("off", "") else path


def listening(path: str) -> bool:
    """Whether a server accepts connections at the socket `path`: False for a socket nobody
    listens on (its server died). Other failures (no such path, no access, a full backlog for
    a second) raise OSError."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    sock.settimeout(1.0)
    try:
        sock.connect(path)
    except ConnectionRefusedError:
        return False
    finally:
        sock.close()
    return True


def build_id() -> bytes:
    """This build's identity: the bundle's build_id file (unique per build.sh run), or, run from
    source, the package directory and its files' mtimes."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        with open(os.path.join(here, "build_id"), "rb") as f:
            return f.read(256).strip()
    except OSError:
        pass
    newest = size = count = 0
    for name in os.listdir(here):
        if name.endswith((".py", ".json")):
            st = os.stat(os.path.join(here, name))
            newest, size, count = max(newest, st.st_mtime_ns), size + st.st_size, count + 1
    return f"source {here} {sys.version.split()[0]} {count}:{size}:{newest}".encode()


def pack(kind: bytes, payload: bytes = b"") -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


def recv_message(sock: _socket.socket, limit: int = MAX_PAYLOAD) -> tuple[bytes, bytes] | None:
    """(type, payload) of the next message; None on end of stream (also mid-message)."""
    head = _recv_exact(sock, _HEADER.size)
    if head is None:
        return None
    kind, size = _HEADER.unpack(head)
    if size > limit:
        raise OSError(0, f"message of {size} bytes exceeds the limit")
    payload = _recv_exact(sock, size) if size else b""
    return None if payload is None else (kind, payload)


def _recv_exact(sock: _socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def handoff(env: "Mapping[str, str]") -> int | None:
    global fallback_reason
    path = socket_path(env)
    if path is None:
        fallback_reason = f"{SOCKET_ENV}=off"
        return None
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    except OSError as e:
        fallback_reason = f"cannot create a socket: {e}"
        return None
    try:
        return _serve_through(sock, path, env)
    except _Fallback as e:
        fallback_reason = str(e)
        return None
    finally:
        sock.close()


def _serve_through(sock: _socket.socket, path: str, env: "Mapping[str, str]") -> int:
    sock.settimeout(HELLO_TIMEOUT)
    try:
        sock.connect(path)
        hello = recv_message(sock, 4096)
    except OSError as e:
        raise _Fallback(f"no server at {path}: {e}") from None
    timing.mark("serve hello")
    # The config, the result and the namespaces go only to a server run by root.
    _pid, server_uid, _gid = _struct.unpack("3i", sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12))
    if server_uid != 0:
        raise _Fallback(f"the server at {path} is not root's (uid {server_uid})")
    if hello is None:
        raise _Fallback(f"the server at {path} closed the connection before its hello")
    kind, payload = hello
    if kind == b"D":
        raise _Fallback(f"the server at {path} refused this client: {payload.decode(errors='replace')}")
    protocol, _, theirs = payload.partition(b"\0")
    if kind != b"H" or protocol != PROTOCOL:
        raise _Fallback(f"the server at {path} speaks another protocol ({protocol[:40]!r})")
    ours = build_id()
    if theirs != ours:
        # Told, the server retires once its running requests finish, so the
        # next one started is this (newer) build.
        try:
            sock.sendall(pack(b"S", ours))
        except OSError:
            pass
        raise _Fallback(f"the server at {path} is another build ({theirs[:80].decode(errors='replace')})")
    fds = _caller_fds()
    try:
        payload = _request_payload(env)
        if len(payload) > MAX_PAYLOAD:
            raise _Fallback(f"the environment is too large to send ({len(payload)} bytes)")
        # Once sent, the request may run: from here on no timeout (the runtime's own kill ends a hang).
        sock.settimeout(None)
        try:
            data = pack(b"R", payload)
            sent = sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _struct.pack(f"{NFDS}i", *fds))])
            if sent < len(data):
                sock.sendall(data[sent:])
        except OSError as e:
            raise _Fallback(f"cannot send the request to {path}: {e}") from None
    finally:
        for fd in fds[3:]:
            os.close(fd)
    timing.mark("serve sent")
    try:
        started = recv_message(sock, 4096)
    except OSError:
        started = None
    if started is None:
        raise _Fallback(f"the server at {path} closed the connection before starting the request")
    if started[0] == b"F":
        raise _Fallback(f"the server at {path} could not start the request: {started[1].decode(errors='replace')}")
    if started[0] != b"A":
        return _lost(env, f"unexpected message {started[0]!r} from the server")
    timing.mark("serve accepted")
    try:
        done = recv_message(sock, 4096)
    except OSError:
        done = None
    timing.mark("serve done")
    if done is None or len(done[1]) != 4:
        return _lost(env, "the server ended before the request reported a status")
    value = int(_struct.unpack("!I", done[1])[0])
    if done[0] == b"X":
        return value & 0xFF
    if done[0] == b"K":
        return _lost(env, f"the request's process was killed by signal {value}")
    return _lost(env, f"unexpected message {done[0]!r} from the server")


def _caller_fds() -> list[int]:
    """The caller's stdin, stdout, stderr, working directory and namespaces, as sent to the server."""
    opened: list[int] = []
    try:
        for path, flags in ((".", os.O_PATH | os.O_DIRECTORY), ("/proc/self/ns/net", os.O_RDONLY), ("/proc/self/ns/mnt", os.O_RDONLY)):
            opened.append(os.open(path, flags | os.O_CLOEXEC))
        for fd in (0, 1, 2):
            os.fstat(fd)  # a closed standard descriptor cannot be passed: in-process handles it as today
    except OSError as e:
        for fd in opened:
            os.close(fd)
        raise _Fallback(f"cannot pass the caller's descriptors: {e}") from None
    return [0, 1, 2, *opened]


def _request_payload(env: "Mapping[str, str]") -> bytes:
    umask = os.umask(0o022)
    os.umask(umask)
    entries = [f"{k}={v}".encode("utf-8", "surrogateescape") for k, v in env.items()]
    return _struct.pack("!I", umask) + b"\0".join(entries)


def _lost(env: "Mapping[str, str]", why: str) -> int:
    """After acceptance the request never runs again: tell the runtime to try later."""
    from . import versions
    from .errors import CNIError, Code

    err = CNIError(Code.TRY_AGAIN, f"nsveth server: {why}; what the request did is undone by DEL or GC", "")
    sys.stdout.buffer.write(err.to_json(versions.CURRENT))
    sys.stdout.flush()
    return 1
