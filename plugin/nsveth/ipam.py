"""Delegation to the IPAM plugin named by `ipam.type`, found on CNI_PATH.

The delegate gets the same environment (CNI_COMMAND overridden) and the whole
config on stdin. Older delegates (Debian's host-local speaks up to 1.0.0)
refuse a newer config with code 1; then nsveth asks their VERSION, retries with
the newest version both speak, and remembers the answer per binary (keyed by
inode, size and mtime, in the root-only runtime dir) so later calls go straight
to the right version: the common path stays one exec.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from . import log, result, safefile, state, versions
from .config import NetConf
from .errors import CNIError, Code
from .request import Request


def find(conf: NetConf, req: Request) -> str:
    for directory in req.path:
        candidate = os.path.join(directory, conf.ipam_type)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CNIError(
        Code.INVALID_CONFIG,
        f'failed to find IPAM plugin "{conf.ipam_type}" (ipam.type) in CNI_PATH {list(req.path)}',
    )


def add(conf: NetConf, req: Request) -> result.Result:
    out, version = _call(conf, req, "ADD")
    where = f"result of IPAM plugin {conf.ipam_type}"
    try:
        obj = json.loads(out)
    except ValueError as e:
        raise CNIError(Code.DELEGATE_FAILED, f"{where} is not JSON: {e}") from None
    if isinstance(obj, dict) and obj.get("cniVersion") in versions.SUPPORTED:
        version = obj["cniVersion"]
    lease = result.from_wire(obj, version, where, Code.DELEGATE_FAILED)
    if not lease.ips:
        raise CNIError(Code.DELEGATE_FAILED, f"IPAM plugin {conf.ipam_type} returned no IP addresses")
    return lease


def delete(conf: NetConf, req: Request) -> None:
    _call(conf, req, "DEL")


def check(conf: NetConf, req: Request) -> None:
    _call(conf, req, "CHECK")


def gc(conf: NetConf, req: Request) -> None:
    """Forward GC to a delegate that knows it (1.1.0); skip older ones."""
    binary = find(conf, req)
    if "1.1.0" not in _versions_of(conf, binary, req):
        log.get().info("IPAM plugin %s does not support GC (spec < 1.1.0): not forwarded", conf.ipam_type)
        return
    _exec(binary, "GC", req, conf.raw, conf.ipam_type)


def status(conf: NetConf, req: Request) -> None:
    """Ready when the delegate is there and answers VERSION (run afresh, never the
    cached answer: the point is that it runs), and its own STATUS if it speaks 1.1.0."""
    try:
        binary = find(conf, req)
        if "1.1.0" in _versions_of(conf, binary, req, fresh=True):
            _exec(binary, "STATUS", req, conf.raw, conf.ipam_type)
    except CNIError as e:
        # The delegate's own readiness answer (50, or 51: existing pods may be degraded) stands.
        code = e.code if e.code in (Code.NOT_AVAILABLE, Code.LIMITED_CONNECTIVITY) else Code.NOT_AVAILABLE
        raise CNIError(code, f"IPAM plugin {conf.ipam_type} is not available: {e.msg}", e.details) from None


def _call(conf: NetConf, req: Request, command: str) -> tuple[bytes, str]:
    binary = find(conf, req)
    known = _cached_versions(conf, binary)
    if known is not None and conf.cni_version not in known:
        return _downgraded(conf, req, binary, command, known, None)
    try:
        return _exec(binary, command, req, conf.raw, conf.ipam_type), conf.cni_version
    except CNIError as e:
        if e.code != Code.INCOMPATIBLE_VERSION:
            raise
        known = _versions_of(conf, binary, req)
        return _downgraded(conf, req, binary, command, known, e)


def _downgraded(
    conf: NetConf, req: Request, binary: str, command: str, known: list[str], original: CNIError | None
) -> tuple[bytes, str]:
    target = versions.highest_common(known, conf.cni_version)
    if target is None or target == conf.cni_version:
        raise original or CNIError(
            Code.INCOMPATIBLE_VERSION,
            f"IPAM plugin {conf.ipam_type} speaks none of the versions up to {conf.cni_version}",
            f"it supports {known}",
        )
    log.get().debug("IPAM plugin %s: calling %s with cniVersion %s", conf.ipam_type, command, target)
    return _exec(binary, command, req, _with_version(conf, target), conf.ipam_type), target


def _with_version(conf: NetConf, target: str) -> bytes:
    doc = dict(conf.doc)
    doc["cniVersion"] = target
    if conf.prev_result is not None:
        doc["prevResult"] = result.to_wire(conf.prev_result, target)
    return json.dumps(doc).encode()


def _exec(binary: str, command: str, req: Request, stdin: bytes, name: str) -> bytes:
    env = dict(req.env)
    env["CNI_COMMAND"] = command
    try:
        status, stdout = _spawn(binary, env, stdin)
    except OSError as e:
        raise CNIError(Code.DELEGATE_FAILED, f"cannot run IPAM plugin {binary}: {e.strerror}") from None
    if status == 0:
        return stdout
    raise _delegate_error(name, command, status, stdout)


def _spawn(binary: str, env: dict[str, str], stdin: bytes) -> tuple[int, bytes]:
    """Run the delegate: (exit status, stdout); stderr is shared with ours.

    posix_spawn rather than subprocess, whose import alone costs ~1.5 ms of
    every run. The config goes in through a memfd, so no pipe can fill up
    while the delegate writes its answer; every descriptor of ours is
    close-on-exec (Python's default, and `_no_inherited_fds` for any the
    runtime handed us), so the delegate gets only 0, 1 and 2, as with
    subprocess's close_fds.
    """
    _no_inherited_fds()
    data = os.memfd_create("nsveth-ipam-stdin", os.MFD_CLOEXEC)
    try:
        view = memoryview(stdin)
        while view:
            view = view[os.write(data, view) :]
        os.lseek(data, 0, os.SEEK_SET)
        read_end, write_end = os.pipe()
        try:
            actions = [(os.POSIX_SPAWN_DUP2, data, 0), (os.POSIX_SPAWN_DUP2, write_end, 1)]
            pid = os.posix_spawn(binary, [binary], env, file_actions=actions)
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
    finally:
        os.close(data)
    chunks = []
    try:
        while chunk := os.read(read_end, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(read_end)
        _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status), b"".join(chunks)


def _no_inherited_fds() -> None:
    """Mark every descriptor above 2 close-on-exec (those the runtime may have passed us)."""
    try:
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the listing's own directory fd, already closed


def _delegate_error(name: str, command: str, status: int, stdout: bytes) -> CNIError:
    try:
        obj = json.loads(stdout)
        code, msg = int(obj["code"]), str(obj["msg"])
        details = str(obj.get("details") or "")
    except (ValueError, KeyError, TypeError):
        text = stdout.decode(errors="replace").strip()[:500]
        return CNIError(Code.DELEGATE_FAILED, f"IPAM plugin {name} {command} failed with exit status {status}", text)
    if not 1 <= code <= 99:
        # Outside the spec's well-known range the number is the delegate's own
        # (999 is the Go library's "internal"; >= 100 would read as nsveth's own
        # codes): report it as a delegate failure and keep the number in details.
        details = f"{name} error code {code}" + (f": {details}" if details else "")
        code = Code.DELEGATE_FAILED
    return CNIError(code, f"IPAM plugin {name} {command}: {msg}", details)


def _versions_of(conf: NetConf, binary: str, req: Request, fresh: bool = False) -> list[str]:
    known = None if fresh else _cached_versions(conf, binary)
    if known is None:
        out = _exec(binary, "VERSION", req, b"", os.path.basename(binary))
        try:
            known = list(json.loads(out)["supportedVersions"])
        except (ValueError, KeyError, TypeError):
            raise CNIError(Code.DELEGATE_FAILED, f"IPAM plugin {binary} gave an invalid VERSION answer") from None
        _remember(conf, binary, known)
    return known


def _identity(binary: str) -> dict[str, Any]:
    st = os.stat(binary)
    return {"path": os.path.realpath(binary), "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _cache_file(conf: NetConf, binary: str) -> str:
    digest = hashlib.sha256(os.path.realpath(binary).encode()).hexdigest()[:32]
    return os.path.join(conf.runtime_dir, ".delegates", f"{digest}.json")


def _cached_versions(conf: NetConf, binary: str) -> list[str] | None:
    try:
        entry = json.loads(safefile.read_trusted(_cache_file(conf, binary)))
        if entry.get("identity") == _identity(binary):
            return list(entry["versions"])
    except (OSError, safefile.Unsafe, ValueError, RecursionError, KeyError, TypeError, AttributeError):
        pass  # no usable entry: ask the delegate
    return None


def _remember(conf: NetConf, binary: str, known: list[str]) -> None:
    try:
        entry = json.dumps({"identity": _identity(binary), "versions": known}).encode()
        dir_fd = safefile.open_dir(state.network_dir(conf.runtime_dir, ".delegates"))
        try:
            safefile.write_atomic(dir_fd, os.path.basename(_cache_file(conf, binary)), entry)
        finally:
            os.close(dir_fd)
    except (OSError, CNIError, safefile.Unsafe) as e:
        log.get().debug("cannot cache delegate versions: %s", e)
