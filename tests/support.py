"""The test helpers of every suite (and of bench/bench.py): unique names, throwaway network
namespaces, `ip -j`, the plugin run in-process / as the executable / served, a warm server, a
test network, the conf examples and cnitool. Look here before writing a helper.

Every namespace and temp dir made here has a unique name and is removed by
the fixture that made it, pass or fail. The plugin always runs from inside a
throwaway "host" netns, so host-side veths, routes and forwarding never reach
the machine the tests run on.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXECUTABLE = os.environ.get("NSVETH_EXE", os.path.join(REPO, "dist", "nsveth", "nsveth"))
CNI_PATH = "/usr/lib/cni"
CONF_EXAMPLES = os.path.join(REPO, "conf-examples")
# The sysctl allowlist an install puts at /etc/cni/nsveth/allowlist.conf (the Kubernetes safe set).
SHIPPED_ALLOWLIST = os.path.join(CONF_EXAMPLES, "allowlist-k8s-safe.txt")
CNITOOL_DIR = os.path.join(REPO, "tools", "cnitool")
CNITOOL = os.path.join(CNITOOL_DIR, "bin", "cnitool")


def unique(prefix: str) -> str:
    """A name unique across concurrent runs; prefix + 8 hex chars (<= 15 bytes for links)."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def sh(*args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Like sh, for long argument lists: a failure raises with the command's output in the message."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def stop(proc: subprocess.Popen, timeout: float = 15) -> int | None:
    """Ends a child process: SIGTERM, SIGKILL if it is still there after timeout; its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def remove_cgroups(pattern: str) -> None:
    """Removes the (empty) cgroup directories matching pattern under /sys/fs/cgroup, deepest first;
    one still in use stays."""
    for cg in sorted(Path("/sys/fs/cgroup").glob(pattern), key=lambda p: len(p.parts), reverse=True):
        try:
            cg.rmdir()
        except OSError:
            pass


# How lock_holder holds its file: flock (nsveth's network lock), lockf (a sender's POSIX lock), or not at all.
_LOCKS = {
    "flock-ex": "fcntl.flock(fd, fcntl.LOCK_EX)",
    "flock-sh": "fcntl.flock(fd, fcntl.LOCK_SH)",
    "lockf": "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)",
    "open": "pass",
}


def lock_holder(path: str, lock: str) -> subprocess.Popen:
    """Another process that opens path (creating it), holds it as `lock` says and sleeps until killed."""
    code = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({path!r}, os.O_RDWR | os.O_CREAT, 0o600)\n"
        f"{_LOCKS[lock]}\n"
        "sys.stdout.write('held\\n'); sys.stdout.flush()\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def netns_path(name: str) -> str:
    return f"/run/netns/{name}"


# What this process made and has not removed yet (netns, servers). Fixtures remove each on
# teardown; when pytest itself dies before its fixtures' teardown (an internal error, a
# KeyboardInterrupt), this removes the rest at exit: only in the process that made them, so a
# forked child's exit never removes its parent's.
_LEFT: dict[tuple[str, object], Callable[[], object]] = {}
_OWNER = os.getpid()


@atexit.register
def _remove_leftovers() -> None:
    if os.getpid() != _OWNER:
        return
    for undo in list(_LEFT.values()):
        try:
            undo()
        except Exception as e:  # noqa: BLE001 - at exit: remove what can be removed, say what could not
            print(f"support: leftover not removed: {e}", file=sys.stderr)


def netns_add(prefix: str) -> str:
    """A new named netns with a unique name; returns the name."""
    name = unique(prefix)
    sh("ip", "netns", "add", name)
    _LEFT[("netns", name)] = lambda: sh("ip", "netns", "delete", name, check=False)
    return name


def netns_delete(name: str) -> None:
    sh("ip", "netns", "delete", name, check=False)
    _LEFT.pop(("netns", name), None)


def ip_json(ns: str | None, *args: str) -> Any:
    """`ip -j ARGS` in netns ns (None: this one), parsed; [] for no output."""
    out = sh("ip", *(["-n", ns] if ns else []), "-j", *args).stdout
    return json.loads(out) if out.strip() else []


def examples(*suffixes: str) -> list[str]:
    """The paths of conf-examples/ files ending in one of suffixes, sorted."""
    return sorted(os.path.join(CONF_EXAMPLES, f) for f in os.listdir(CONF_EXAMPLES) if f.endswith(suffixes))


def load_example(name: str) -> dict[str, Any]:
    """A network config of conf-examples/ (a file name there, or a path)."""
    with open(os.path.join(CONF_EXAMPLES, name)) as f:
        conf: dict[str, Any] = json.load(f)
    return conf


def build_cnitool() -> str:
    """tools/cnitool/bin/cnitool, built from its pinned source (a no-op when it is up to date)."""
    run([os.path.join(CNITOOL_DIR, "build.sh")], timeout=600)
    return CNITOOL


class Netns:
    """A named network namespace under /run/netns."""

    def __init__(self, prefix: str = "nsvt-") -> None:
        self.name = netns_add(prefix)
        self.path = netns_path(self.name)

    def delete(self) -> None:
        netns_delete(self.name)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.name, *args, check=check)

    def ip_json(self, *args: str) -> Any:
        return ip_json(self.name, *args)

    def links(self) -> dict[str, dict]:
        return {link["ifname"]: link for link in self.ip_json("-d", "link", "show")}

    def addresses(self, ifname: str) -> list[str]:
        found = self.ip_json("addr", "show", "dev", ifname)
        return [f"{a['local']}/{a['prefixlen']}" for a in found[0]["addr_info"]] if found else []

    def routes(self, family: str = "-4") -> list[dict]:
        return self.ip_json(family, "route", "show", "table", "all")

    def sysctl(self, key: str) -> str:
        return self.run("cat", f"/proc/sys/{key}").stdout.strip()


@contextlib.contextmanager
def netns(prefix: str = "nsvt-") -> Iterator[Netns]:
    ns = Netns(prefix)
    try:
        yield ns
    finally:
        ns.delete()


@contextlib.contextmanager
def netns_many(count: int, prefix: str = "nsvp-") -> Iterator[list[Netns]]:
    """count namespaces, all deleted on exit (also when making one of them fails)."""
    made: list[Netns] = []
    try:
        for _ in range(count):
            made.append(Netns(prefix))
        yield made
    finally:
        for ns in made:
            ns.delete()


@dataclasses.dataclass
class Reply:
    status: int
    stdout: bytes
    stderr: str = ""

    @property
    def json(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else None

    @property
    def code(self) -> int | None:
        body = self.json
        return body.get("code") if isinstance(body, dict) and self.status != 0 else None


class Server:
    """`nsveth serve` from the built executable on a private socket, in a private root-owned dir.

    Its stderr (one line per request, naming the client's pid) goes to a log
    file, which is how a served Plugin proves its request really was served.
    """

    def __init__(self, *args: str, directory: str | None = None, exe: str | None = None) -> None:
        import tempfile

        self.exe = exe or EXECUTABLE
        if not os.access(self.exe, os.X_OK):
            raise AssertionError(f"{self.exe} is missing: run ./build.sh first")
        self.dir = directory or tempfile.mkdtemp(prefix="nsvserve-")  # 0700, owned by root
        self.socket = os.path.join(self.dir, "nsveth.sock")
        self.log_path = os.path.join(self.dir, "serve.log")
        self.args = args
        self.proc: subprocess.Popen | None = None
        self._starts = 0

    def start(self, prefix: list[str] | None = None, wait: bool = True, **kw: Any) -> Server:
        self._starts = self.log().count("serving ")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*(prefix or []), self.exe, "serve", "--socket", self.socket, *self.args], stderr=log, stdin=subprocess.DEVNULL, **kw
            )
        _LEFT[("server", id(self))] = self.stop
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        import time

        deadline = time.monotonic() + timeout
        while self.log().count("serving ") <= self._starts:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"nsveth serve exited with {self.proc.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"nsveth serve did not start: {self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def served(self, pid: int) -> bool:
        """Whether the server ran the request of client `pid` (not one whose set-up failed,
        which the client then ran itself: that line says "not started")."""
        return any(
            line.endswith(f" pid={pid}") and "not started" not in line for line in self.log().splitlines()
        )

    def served_count(self) -> int:
        """Requests the server ran (one log line each, naming the client's pid)."""
        return sum(" pid=" in line and "not started" not in line for line in self.log().splitlines())

    def stop(self, timeout: float = 30) -> int | None:
        _LEFT.pop(("server", id(self)), None)
        return stop(self.proc, timeout) if self.proc is not None else None

    def remove(self) -> None:
        import shutil

        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def cni_env(command: str, container_id: str = "", netns: str = "", ifname: str = "eth0", **extra: str) -> dict:
    """The environment of one plugin call, as a runtime sets it (CNI_IFNAME only where the spec has it)."""
    env = {"CNI_COMMAND": command, "CNI_PATH": CNI_PATH, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if container_id:
        env["CNI_CONTAINERID"] = container_id
    if netns:
        env["CNI_NETNS"] = netns
    if ifname and command in ("ADD", "DEL", "CHECK"):
        env["CNI_IFNAME"] = ifname
    env.update(extra)
    return env


class Plugin:
    """Runs nsveth in the host netns: in-process (`dispatch.run`), as the built executable
    (with the warm server off), or as the built executable handing the request to `server`."""

    def __init__(self, host: Netns, mode: str = "inproc", server: Server | None = None) -> None:
        assert mode in ("inproc", "exe", "served")
        assert (mode == "served") == (server is not None)
        self.host = host
        self.mode = mode
        self.server = server

    env = staticmethod(cni_env)

    def call(self, env: dict, stdin: bytes | dict | str, timeout: float = 120) -> Reply:
        """`timeout` bounds the executable (exe, served); it raises subprocess.TimeoutExpired."""
        if isinstance(stdin, dict):
            stdin = json.dumps(stdin)
        if isinstance(stdin, str):
            stdin = stdin.encode()
        if self.mode != "inproc":
            return self._exe(env, stdin, timeout)
        return self._inproc(env, stdin)

    def run(self, command: str, conf: Any, **kw: str) -> Reply:
        return self.call(self.env(command, **kw), conf)

    def run_each(self, command: str, conf: Any, pods: list[Netns], prefix: str) -> list[Reply]:
        """command for container f"{prefix}{i}" in each pods[i], all at once (threads), each of which
        must succeed; the replies in pod order. conf: one for all, or a list of one per pod."""
        confs = conf if isinstance(conf, list) else [conf] * len(pods)
        replies = run_threads(
            [lambda i=i, p=p: self.run(command, confs[i], container_id=f"{prefix}{i}", netns=p.path) for i, p in enumerate(pods)]
        )
        assert [r.status for r in replies] == [0] * len(pods), [r.stdout for r in replies if r.status]
        return replies

    def _exe(self, env: dict, stdin: bytes, timeout: float) -> Reply:
        if not os.access(EXECUTABLE, os.X_OK):
            raise AssertionError(f"{EXECUTABLE} is missing: run ./build.sh first")
        env = {"NSVETH_SOCKET": self.server.socket if self.server else "off", **env}
        with subprocess.Popen(
            ["ip", "netns", "exec", self.host.name, EXECUTABLE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        ) as proc:
            try:
                out, err = proc.communicate(stdin, timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
        if self.server is not None and env["NSVETH_SOCKET"] == self.server.socket:
            # The request must really have gone through the server, not fallen back in-process.
            assert self.server.served(proc.pid), f"not served: {err.decode(errors='replace')}\n{self.server.log()[-2000:]}"
        return Reply(proc.returncode, out, err.decode(errors="replace"))

    def _inproc(self, env: dict, stdin: bytes) -> Reply:
        from nsveth import dispatch
        from nsveth import netns as nsmod

        fd = nsmod.open_path(self.host.path)
        try:
            with nsmod.entered(fd):
                out, status = dispatch.run(env, stdin)
        finally:
            os.close(fd)
        return Reply(status, out)


class Network:
    """A CNI network for one test: unique name, private IPAM and runtime dirs."""

    def __init__(self, tmp: str, subnet: str = "10.77.0.0/24", name: str | None = None, **fields: Any) -> None:
        self.name = name or unique("nt-")
        self.tmp = tmp
        self.ipam_dir = os.path.join(tmp, "ipam")
        self.runtime_dir = os.path.join(tmp, "run")
        self.subnet = subnet
        self.fields = fields

    def conf(self, version: str = "1.0.0", subnets: list[str] | None = None, **fields: Any) -> dict:
        ranges = [[{"subnet": s}] for s in (subnets or [self.subnet])]
        routes = [{"dst": "0.0.0.0/0" if ":" not in s else "::/0"} for s in (subnets or [self.subnet])]
        conf = {
            "cniVersion": version,
            "name": self.name,
            "type": "nsveth",
            "runtimeDir": self.runtime_dir,
            "ipam": {"type": "host-local", "ranges": ranges, "routes": routes, "dataDir": self.ipam_dir},
        }
        conf.update(self.fields)
        conf.update(fields)
        return conf

    def from_example(self, filename: str) -> dict:
        """The one plugin entry of the conflist conf-examples/<filename> as a runtime passes it, on
        this network: its name, with IPAM and runtime state in this network's dirs."""
        doc = load_example(filename)
        (entry,) = doc["plugins"]
        conf = {**entry, "cniVersion": doc["cniVersion"], "name": self.name, "runtimeDir": self.runtime_dir}
        conf["ipam"] = {**conf["ipam"], "dataDir": self.ipam_dir}
        return conf

    def leases(self) -> list[str]:
        d = os.path.join(self.ipam_dir, self.name)
        if not os.path.isdir(d):
            return []
        return sorted(f for f in os.listdir(d) if f not in ("lock",) and not f.startswith("last_reserved_ip"))

    def record_path(self, container_id: str, ifname: str = "eth0") -> str:
        """Where nsveth keeps the state record of one attachment of this network."""
        return os.path.join(self.runtime_dir, self.name, f"{container_id}:{ifname}.json")

    def record(self, container_id: str, ifname: str = "eth0") -> dict:
        with open(self.record_path(container_id, ifname)) as f:
            return json.load(f)

    def state_files(self) -> list[str]:
        d = os.path.join(self.runtime_dir, self.name)
        return sorted(f for f in os.listdir(d) if f.endswith(".json")) if os.path.isdir(d) else []


def with_prev(conf: dict, result: dict) -> dict:
    return {**conf, "prevResult": result}


def host_veths(host: Netns) -> list[str]:
    return sorted(name for name in host.links() if name.startswith("nsv"))


def run_threads(fns: list) -> list:
    """Run callables concurrently, return their results (re-raising the first failure)."""
    results: list[Any] = [None] * len(fns)
    errors: list[BaseException] = []

    def wrap(i: int, fn: Any) -> None:
        try:
            results[i] = fn()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results
