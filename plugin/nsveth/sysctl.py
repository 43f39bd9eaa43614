"""Namespaced sysctls in the pod netns: the key rules (pure) and the /proc/sys/net access.

Pure part (unit-tested without root): `split` a key the way runc and the
kubelet do (the first separator decides: dot form `net.ipv4.tcp_keepalive_time`
or slash form `net/ipv4/conf/eth0.100/rp_filter`, so a dotted interface name
survives in slash form), substitute the `IFNAME` placeholder, `classify` a
key by kernel namespace (runc's rules: only `net.*` belongs to a network
plugin), check every segment against a strict character set, refuse
duplicates after normalisation, and match an admin allowlist written in the
kubelet `--allowed-unsafe-sysctls` syntax (anchored, exact or `prefix*`).
`plan()` does all of that, applies the trust policy (pod-author args never
override the config and are limited to the allowlist, or without one to the
Kubernetes safe set) and returns the writes to make, or a code-7 error.

Kernel-facing part (call it inside `netns.entered(pod)`: /proc/sys/net
resolves to the netns of the task that looks a name up): every file is
reached by a walk from an fd of /proc/sys/net, one segment per openat with
O_NOFOLLOW, staying on the proc mount, ending on a regular file, so no key
and no interface name can reach outside the pod's /proc/sys/net. `probe()`
checks before anything is written that each key is per-netns on this kernel
(a non-namespaced key is either absent in a child netns or read-only there)
and that no value would make the kernel load a module; `pending()` reads the
values that `apply()` would replace (the caller records them first),
`apply()` writes the values that differ, `restore()` puts recorded originals back (after a failed write, at DEL); `read()` is CHECK's.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import stat
from collections.abc import Mapping, Sequence
from typing import Any

from . import procsys, safefile
from .errors import CNIError, Code
from .procsys import read_fd as _read_fd
from .procsys import write_fd as _write_fd

DEFAULT_ALLOWLIST = "/etc/cni/nsveth/allowlist.conf"
PLACEHOLDER = "IFNAME"

# runc validator.go / kubelet namespace.go: keys that belong to the IPC namespace.
IPC_KEYS = frozenset(
    {
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    }
)
IPC_PREFIX = "fs.mqueue."
# kubelet namespace.go: what an allowlist pattern may name (the exact key, or
# the prefix before '*', must start with one of these). The kubelet's
# allowlist is shared with nsveth's, so its IPC patterns are accepted here
# too; they can never match a key nsveth applies.
NAMESPACED_PREFIXES = ("net.", "kernel.shm", "kernel.msg", IPC_PREFIX)
NAMESPACED_KEYS = frozenset({"kernel.sem"})
UTS_KEYS = frozenset({"kernel.hostname", "kernel.domainname"})

# Directories of /proc/sys/net that hold one subdirectory per interface
# (plus "all" and "default"); segment 3 of such a key is an interface name.
PER_INTERFACE = frozenset({("ipv4", "conf"), ("ipv6", "conf"), ("ipv4", "neigh"), ("ipv6", "neigh"), ("mpls", "conf")})

MAX_KEY = 512
MAX_VALUE = 4096
# A segment: sysctl names are [a-z0-9_-]; interface names add upper case, '.', '@', '+'.
_SEGMENT = re.compile(r"[A-Za-z0-9_@+\-][A-Za-z0-9_.@+\-]*")
# kubelet allowlist.go: a pattern, dot or slash separated, optionally ending in '*'.
_PATTERN_SEGMENT = r"[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
_PATTERN = re.compile(rf"({_PATTERN_SEGMENT}[\./])*([a-z0-9][-_a-z0-9]*)?[a-z0-9*]")
_PATTERN_MAX = 253


def _invalid(msg: str) -> CNIError:
    return CNIError(Code.INVALID_CONFIG, msg)


# ---------------------------------------------------------------- pure rules
def split(key: str) -> tuple[str, ...]:
    """Segments of a key; the first separator ('.' or '/') is the separator of the whole key."""
    for ch in key:
        if ch in "./":
            return tuple(key.split(ch))
    return (key,)


def dotted(segments: Sequence[str]) -> str:
    """The normalised (kubelet `NormalizeName`) dot form: a '.' inside a segment becomes '/'."""
    return ".".join(s.replace(".", "/") for s in segments)


def normalise(key: str) -> str:
    """Dot form of a key in either form (`net/ipv4/conf/eth0.100/rp_filter` -> `net.ipv4.conf.eth0/100.rp_filter`)."""
    return dotted(split(key))


def classify(name: str) -> str | None:
    """Why the (dot-form) key is no business of a network plugin, or None for a net.* key."""
    if name.startswith("net."):
        return None
    if name in IPC_KEYS or name.startswith(IPC_PREFIX):
        return "is IPC-namespaced: set them through the container runtime, not a network plugin"
    if name in UTS_KEYS:
        return "is UTS-namespaced: set the hostname/domainname through the container runtime, not a network plugin"
    if name.startswith("user."):
        return "is user-namespaced: set it through the container runtime, not a network plugin"
    return "is not in a separate kernel namespace: setting it would change the host"


@dataclasses.dataclass(frozen=True)
class Sysctl:
    """One write: the key as configured, its file under /proc/sys and the value."""

    key: str
    segments: tuple[str, ...]  # after IFNAME substitution; segments[0] == "net"
    value: str

    @property
    def name(self) -> str:
        return dotted(self.segments)

    @property
    def path(self) -> str:
        return "/".join(self.segments)

    def interface(self) -> str | None:
        """The interface a per-interface key is about (net.ipv4.conf.<if>.x), else None."""
        if len(self.segments) == 5 and self.segments[1:3] in PER_INTERFACE:
            return self.segments[3]
        return None


def check_value(key: str, value: Any) -> str:
    if not isinstance(value, str):
        kind = "a number" if isinstance(value, (int, float)) and not isinstance(value, bool) else f"a JSON {_json_type(value)}"
        raise _invalid(f'sysctl "{key}": the value must be a string (as in runc and Kubernetes), not {kind}')
    if "\n" in value or "\r" in value or "\0" in value:
        raise _invalid(f'sysctl "{key}": the value must not contain a newline or NUL')
    if not value.strip():
        raise _invalid(f'sysctl "{key}": the value is empty')
    if len(value.encode()) >= MAX_VALUE:
        raise _invalid(f'sysctl "{key}": the value is longer than {MAX_VALUE - 1} bytes')
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def parse(key: str, value: Any, ifname: str) -> Sysctl:
    """One key/value pair checked by every pure rule (code 7 naming the key on failure)."""
    if not isinstance(key, str) or not key:
        raise _invalid("sysctl: empty key")
    if "\0" in key or any(ch.isspace() for ch in key):
        raise _invalid(f"sysctl {key!r}: the key contains NUL or whitespace")
    if len(key) > MAX_KEY:
        raise _invalid(f'sysctl "{key[:64]}...": the key is longer than {MAX_KEY} characters')
    if key.startswith("/"):
        raise _invalid(f'sysctl "{key}": absolute paths are not keys (write it relative to /proc/sys, e.g. net/core/somaxconn)')
    raw = split(key)
    reason = classify(dotted(raw))
    if reason is not None:
        raise _invalid(f'sysctl "{key}" {reason}; only network-namespace sysctls (net.*) are applied')
    segments = tuple(ifname if s == PLACEHOLDER else s for s in raw)
    for s in segments:
        _check_segment(key, s)
    if len(segments) < 3:
        raise _invalid(f'sysctl "{key}" names a directory, not a sysctl')
    return Sysctl(key, segments, check_value(key, value))


def _safe_segment(segment: str) -> bool:
    return bool(_SEGMENT.fullmatch(segment)) and len(segment) <= 255


def _check_segment(key: str, segment: str) -> None:
    if segment == "":
        raise _invalid(f'sysctl "{key}": empty path segment (doubled or trailing separator)')
    if segment in (".", "..") or segment.startswith("."):
        raise _invalid(f'sysctl "{key}": path segment "{segment}" is not allowed')
    if not _safe_segment(segment):
        raise _invalid(f'sysctl "{key}": path segment "{segment}" has characters outside [A-Za-z0-9_.@+-]')


@dataclasses.dataclass(frozen=True)
class Allowlist:
    """Admin policy: patterns in the kubelet --allowed-unsafe-sysctls syntax, normalised to dot form."""

    source: str
    patterns: tuple[str, ...]

    def allows(self, name: str) -> bool:
        for p in self.patterns:
            if p.endswith("*"):
                if name.startswith(p[:-1]):
                    return True
            elif name == p:
                return True
        return False


def parse_allowlist(text: str, source: str) -> Allowlist:
    """One pattern per line (commas also separate), '#' starts a comment; anything malformed is code 7."""
    patterns: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0]
        for item in line.split(","):
            item = item.strip()
            if not item:
                continue
            where = f"sysctl allowlist {source} line {lineno}"
            if len(item) > _PATTERN_MAX or not _PATTERN.fullmatch(item):
                raise _invalid(
                    f'{where}: "{item}" is not a sysctl pattern (lower-case keys separated by "." or "/",'
                    ' optionally ending in "*")'
                )
            pattern = normalise(item)
            prefix = pattern.split("*", 1)[0]
            if not (prefix in NAMESPACED_KEYS or prefix.startswith(NAMESPACED_PREFIXES)):
                raise _invalid(f'{where}: "{item}" is not known to be namespaced')
            patterns.append(pattern)
    return Allowlist(source, tuple(patterns))


# The Kubernetes safe set (pkg/kubelet/sysctl/safe_sysctls.go), its network
# keys: what a pod author may set through args.cni.sysctl when the admin
# installed no allowlist. conf-examples/allowlist-k8s-safe.txt is the same
# list as an installable file (a unit test keeps the two equal).
K8S_SAFE = (
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_slow_start_after_idle",
    "net.ipv4.tcp_notsent_lowat",
)
K8S_SAFE_SOURCE = "the Kubernetes safe set (no sysctl allowlist is installed)"
_FROM_ARGS = " from args.cni.sysctl"

# Writes that make the kernel load a module: key -> the per-netns file listing
# the values it accepts without loading anything. On a write with
# CAP_NET_ADMIN, tcp_congestion_control calls tcp_ca_find_autoload(), which
# request_module()s "tcp_<value>" for a name not registered yet. Checked on
# 6.18 for the other writers that autoload: net.core.default_qdisc
# (qdisc_set_default -> request_module("sch_<value>")) and
# net.ipv4.tcp_allowed_congestion_control are host-wide (absent / read-only in
# a child netns), so probe() refuses them as not per-netns; the MPTCP
# scheduler / path manager look up registered names only. The allowed list is
# in the table anyway: every name in it must be available, should a kernel
# make it per-netns.
MODULE_LOADING: dict[tuple[str, ...], tuple[str, ...]] = {
    ("net", "ipv4", "tcp_congestion_control"): ("net", "ipv4", "tcp_available_congestion_control"),
    ("net", "ipv4", "tcp_allowed_congestion_control"): ("net", "ipv4", "tcp_available_congestion_control"),
}


def _parse_object(where: str, obj: Mapping[str, Any], ifname: str) -> dict[tuple[str, ...], Sysctl]:
    """The keys of one object; two keys naming the same file (after normalising form and IFNAME) are an error."""
    parsed: dict[tuple[str, ...], Sysctl] = {}
    for key, value in obj.items():
        s = parse(key, value, ifname)
        if s.segments in parsed:
            raise _invalid(f'duplicate sysctl in {where}: "{parsed[s.segments].key}" and "{key}" are the same key ({s.name})')
        parsed[s.segments] = s
    return parsed


def _refuse_denied(denied: Sequence[Sysctl], where: str, source: str, allowed: Sequence[str]) -> None:
    """Code 7 naming the keys (`where`: "" for the config's own, " from args.cni.sysctl") and what is allowed."""
    if denied:
        keys = ", ".join(f'"{s.key}"' for s in denied)
        raise _invalid(f"sysctl {keys}{where} not allowed by {source}; allowed: {', '.join(allowed) or 'nothing'}")


def plan(
    config: Mapping[str, Any] | None,
    args: Mapping[str, Any] | None,
    ifname: str,
    allowlist: Allowlist | None = None,
) -> tuple[Sysctl, ...]:
    """The writes for `sysctl` of the config plus `args.cni.sysctl`, all rules checked (code 7 otherwise).

    The config is the admin's; args may come from a pod author (Multus copies
    a pod annotation there), so they are trusted less: they never override a
    key the config sets, and each must be allowed by the allowlist or, with
    none installed, be in the Kubernetes safe set. The config's own keys are
    limited only by an explicit allowlist.
    """
    own = _parse_object("sysctl", config or {}, ifname)
    extra = _parse_object("args.cni.sysctl", args or {}, ifname)
    clashes = [(own[k], s) for k, s in extra.items() if k in own]
    if clashes:
        c, a = clashes[0]
        raise _invalid(
            f'args.cni.sysctl "{a.key}" would override sysctl "{c.key}" of the network config ({a.name}):'
            " per-pod args never override the config"
        )
    if allowlist is not None:
        _refuse_denied([s for s in own.values() if not allowlist.allows(s.name)], "", allowlist.source, allowlist.patterns)
        _refuse_denied([s for s in extra.values() if not allowlist.allows(s.name)], _FROM_ARGS, allowlist.source, allowlist.patterns)
    else:
        _refuse_denied([s for s in extra.values() if s.name not in K8S_SAFE], _FROM_ARGS, K8S_SAFE_SOURCE, K8S_SAFE)
    return (*own.values(), *extra.values())


def refuse_module_loading(wanted: Sequence[Sysctl], available: Mapping[tuple[str, ...], str | None]) -> None:
    """Code 7 for a value that would make the kernel load a module (any source: a module is host-wide).

    `available`: for each MODULE_LOADING list file, its content in the pod
    netns (None when unreadable: then nothing can be shown to be loaded already).
    """
    for s in wanted:
        listing = MODULE_LOADING.get(s.segments)
        if listing is None:
            continue
        have = (available.get(listing) or "").split()
        missing = [name for name in s.value.split() if name not in have]
        if missing:
            raise _invalid(
                f'sysctl "{s.key}": "{" ".join(missing)}" is not in {".".join(listing)} ({" ".join(have) or "unreadable"}):'
                " writing it would make the kernel load a module"
            )


def same_value(a: str, b: str) -> bool:
    """Equal as the kernel means them: multi-value sysctls print tab-separated, are written space-separated."""
    return a.split() == b.split()


def compare(
    wanted: Sequence[Sysctl], seen: Mapping[str, str | None], applied: Mapping[tuple[str, ...], str] | None = None
) -> list[str]:
    """CHECK: every configured key whose value in the pod differs (seen: key -> value, None when
    unreadable; applied: file -> the value the kernel showed right after ADD wrote it, when that
    was a normalised form of the configured one)."""
    problems = []
    for s in wanted:
        have = seen.get(s.key)
        normalised = (applied or {}).get(s.segments)
        if have is None:
            problems.append(f'sysctl {s.key} cannot be read in the pod netns, expected "{s.value}"')
        elif not same_value(have, s.value) and not (normalised is not None and same_value(have, normalised)):
            problems.append(f'sysctl {s.key} is "{have}", expected "{s.value}"')
    return problems


# ---------------------------------------------------------- kernel-facing part
def load_allowlist(path: str | None) -> Allowlist | None:
    """The admin policy: `path` (must be readable), else the default file when present, else None.

    The file is read as safefile reads what nsveth trusts: a regular file (a
    symlink is not followed, a FIFO never blocks), owned by root, writable by
    no one else, at most 64 KiB; anything else is code 7 naming the path.
    """
    explicit = path is not None
    path = path or DEFAULT_ALLOWLIST
    try:
        text = safefile.read_trusted(path).decode("utf-8")
    except FileNotFoundError:
        if explicit:
            raise _invalid(f"sysctl allowlist {path} does not exist") from None
        return None
    except safefile.Unsafe as e:
        raise _invalid(f"sysctl allowlist {path} {e}") from None
    except UnicodeDecodeError:
        raise _invalid(f"sysctl allowlist {path} is not UTF-8 text") from None
    return parse_allowlist(text, path)


def probe(wanted: Sequence[Sysctl], new_ifname: str) -> None:
    """Code 7 naming the first key that is not a writable per-netns sysctl here; writes nothing.

    Call inside the pod netns, before the interface `new_ifname` exists: its
    per-interface keys are probed on the directory of "lo", which every netns
    has and which holds the same files as any interface's ("default" would not
    do: a child netns has no neigh/default).
    """
    if not wanted:
        return
    with procsys.Tree() as tree:
        if os.fstatvfs(tree.fd).f_flag & os.ST_RDONLY:
            raise CNIError(Code.KERNEL, f"{procsys.ROOT} is mounted read-only where nsveth runs: sysctls cannot be set")
        for s in wanted:
            segments = s.segments
            if s.interface() == new_ifname:
                segments = (*segments[:3], "lo", segments[4])
            try:
                fd = tree.open(segments, os.O_PATH)
            except FileNotFoundError:
                raise _invalid(_absent(s, new_ifname)) from None
            except (OSError, ValueError) as e:
                raise _invalid(f'sysctl "{s.key}" cannot be used: {_why(e)}') from None
            try:
                mode = os.fstat(fd).st_mode
            finally:
                os.close(fd)
            if not mode & stat.S_IRUSR:
                # e.g. net.ipv4.route.flush: an action, not a setting; it has
                # no value to compare before writing, restore or CHECK.
                raise _invalid(f'sysctl "{s.key}" is write-only (an action, not a setting): it cannot be set per pod')
            if not mode & stat.S_IWUSR:
                raise _invalid(
                    f'sysctl "{s.key}" is read-only in a pod network namespace on this kernel: it is not per-netns'
                    " (it would be a host-wide setting)"
                )
        refuse_module_loading(wanted, _listings(tree, wanted))


def _listings(tree: procsys.Tree, wanted: Sequence[Sysctl]) -> dict[tuple[str, ...], str | None]:
    """Content of the MODULE_LOADING list files the wanted keys need, read in this netns."""
    out: dict[tuple[str, ...], str | None] = {}
    for s in wanted:
        listing = MODULE_LOADING.get(s.segments)
        if listing is None or listing in out:
            continue
        try:
            fd = tree.open(listing, os.O_RDONLY)
        except (OSError, ValueError):
            out[listing] = None
            continue
        try:
            out[listing] = _read_fd(fd)
        except OSError:
            out[listing] = None
        finally:
            os.close(fd)
    return out


def _absent(s: Sysctl, new_ifname: str) -> str:
    iface = s.interface()
    if iface is not None and iface not in ("all", "default", new_ifname):
        return f'sysctl "{s.key}" does not exist in the pod netns (no interface "{iface}" there?)'
    return (
        f'sysctl "{s.key}" does not exist in a pod network namespace on this kernel: it is not per-netns'
        " (a host-wide setting) or not supported"
    )


def _why(e: BaseException) -> str:
    if isinstance(e, OSError):
        if e.errno == errno.ELOOP:
            return "a symbolic link is on its path"
        return e.strerror or str(e)
    return str(e)


@dataclasses.dataclass(frozen=True)
class Original:
    """A value `apply` replaced, to put back on rollback or DEL, and the value the
    kernel shows after the write (it may normalise: "0x10" reads back "16", a *_ms
    value rounds to jiffies), which CHECK accepts as well as the configured one."""

    segments: tuple[str, ...]
    value: str
    applied: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": list(self.segments), "value": self.value}
        if self.applied is not None:
            out["applied"] = self.applied
        return out

    @classmethod
    def from_json(cls, obj: Any) -> Original | None:
        """From a state record; None for anything malformed (records are not trusted blindly)."""
        if not isinstance(obj, dict):
            return None
        path, value = obj.get("path"), obj.get("value")
        if not (isinstance(path, list) and len(path) >= 3 and path[0] == "net" and isinstance(value, str)):
            return None
        if not all(isinstance(s, str) and _safe_segment(s) for s in path) or "\0" in value or "\n" in value:
            return None
        applied = obj.get("applied")
        return cls(tuple(path), value, applied if isinstance(applied, str) else None)


def pending(wanted: Sequence[Sysctl]) -> list[Original]:
    """The current value of each key `apply` would change, read without writing.

    Call inside the pod netns and record the result before `apply`: a process
    killed between two writes then leaves what DEL needs to put back.
    """
    seen = read(wanted)
    return [
        Original(s.segments, current)
        for s in wanted
        if (current := seen[s.key]) is not None and not same_value(current, s.value)
    ]


def apply(wanted: Sequence[Sysctl]) -> list[Original]:
    """Write each value that differs from the current one; the originals of what was written.

    Call inside the pod netns, with the `pending` originals recorded first: if
    a write fails, a CNIError names the key (code 7 when the kernel refuses the
    value or the key, code 100 otherwise) and the caller `restore`s them.
    """
    done: list[Original] = []
    if not wanted:
        return done
    with procsys.Tree() as tree:
        for s in wanted:
            original = _set(tree, s)
            if original is not None:
                done.append(original)
    return done


def _set(tree: procsys.Tree, s: Sysctl) -> Original | None:
    try:
        fd = tree.open(s.segments, os.O_RDWR)
    except FileNotFoundError:
        raise _invalid(f'sysctl "{s.key}" does not exist in the pod netns') from None
    except (OSError, ValueError) as e:
        code = Code.INVALID_CONFIG if isinstance(e, ValueError) or e.errno in (errno.EACCES, errno.ELOOP) else Code.KERNEL
        raise CNIError(code, f'sysctl "{s.key}" cannot be opened in the pod netns: {_why(e)}') from None
    try:
        current = _read_fd(fd)
        if same_value(current, s.value):
            return None
        try:
            _write_fd(fd, s.value)
        except OSError as e:
            code = Code.INVALID_CONFIG if e.errno in (errno.EINVAL, errno.ERANGE, errno.EPERM) else Code.KERNEL
            raise CNIError(code, f'failed to set sysctl "{s.key}" to "{s.value}": {e.strerror}') from None
        applied = _read_fd(fd)
        if same_value(applied, s.value):
            return Original(s.segments, current)
        from . import log

        log.get().info('the kernel shows sysctl %s as "%s" after writing "%s"', s.key, applied, s.value)
        return Original(s.segments, current, applied)
    finally:
        os.close(fd)


def restore(originals: Sequence[Original]) -> list[str]:
    """Put recorded values back (newest first), inside the pod netns; what failed, as messages."""
    failed: list[str] = []
    if not originals:
        return failed
    with procsys.Tree() as tree:
        for o in reversed(originals):
            try:
                fd = tree.open(o.segments, os.O_RDWR)
            except FileNotFoundError:
                continue  # the interface it was on is gone: nothing to restore
            except (OSError, ValueError) as e:
                failed.append(f"{'/'.join(o.segments)}: {_why(e)}")
                continue
            try:
                if not same_value(_read_fd(fd), o.value):
                    _write_fd(fd, o.value)
            except OSError as e:
                failed.append(f"{'/'.join(o.segments)}: {e.strerror}")
            finally:
                os.close(fd)
    return failed


def read(wanted: Sequence[Sysctl]) -> dict[str, str | None]:
    """Current value of each key in the calling thread's netns (None when it cannot be read)."""
    out: dict[str, str | None] = {}
    if not wanted:
        return out
    with procsys.Tree() as tree:
        for s in wanted:
            try:
                fd = tree.open(s.segments, os.O_RDONLY)
            except (OSError, ValueError):
                out[s.key] = None
                continue
            try:
                out[s.key] = _read_fd(fd)
            except OSError:
                out[s.key] = None
            finally:
                os.close(fd)
    return out
