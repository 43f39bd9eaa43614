"""Shared test helpers: throwaway network namespaces and a way to run the plugin.

Every namespace and temp dir made here has a unique name and is removed by
the fixture that made it, pass or fail. The plugin always runs from inside a
throwaway "host" netns, so host-side veths, routes and forwarding never reach
the machine the tests run on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXECUTABLE = os.environ.get("NSVETH_EXE", os.path.join(REPO, "dist", "nsveth", "nsveth"))
CNI_PATH = "/usr/lib/cni"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def sh(*args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


class Netns:
    """A named network namespace under /run/netns."""

    def __init__(self, prefix: str = "nsvt-") -> None:
        self.name = unique(prefix)
        sh("ip", "netns", "add", self.name)
        self.path = f"/run/netns/{self.name}"

    def delete(self) -> None:
        sh("ip", "netns", "delete", self.name, check=False)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.name, *args, check=check)

    def ip_json(self, *args: str) -> Any:
        out = sh("ip", "-n", self.name, "-j", *args).stdout
        return json.loads(out) if out.strip() else []

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


class Plugin:
    """Runs nsveth in the host netns, in-process (`dispatch.run`) or as the built executable."""

    def __init__(self, host: Netns, mode: str = "inproc") -> None:
        assert mode in ("inproc", "exe")
        self.host = host
        self.mode = mode

    def env(self, command: str, container_id: str = "", netns: str = "", ifname: str = "eth0", **extra: str) -> dict:
        env = {"CNI_COMMAND": command, "CNI_PATH": CNI_PATH, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        if container_id:
            env["CNI_CONTAINERID"] = container_id
        if netns:
            env["CNI_NETNS"] = netns
        if ifname and command in ("ADD", "DEL", "CHECK"):
            env["CNI_IFNAME"] = ifname
        env.update(extra)
        return env

    def call(self, env: dict, stdin: bytes | dict | str) -> Reply:
        if isinstance(stdin, dict):
            stdin = json.dumps(stdin)
        if isinstance(stdin, str):
            stdin = stdin.encode()
        if self.mode == "exe":
            return self._exe(env, stdin)
        return self._inproc(env, stdin)

    def run(self, command: str, conf: Any, **kw: str) -> Reply:
        return self.call(self.env(command, **kw), conf)

    def _exe(self, env: dict, stdin: bytes) -> Reply:
        if not os.access(EXECUTABLE, os.X_OK):
            raise AssertionError(f"{EXECUTABLE} is missing: run ./build.sh first")
        proc = subprocess.run(
            ["ip", "netns", "exec", self.host.name, EXECUTABLE], input=stdin, env=env, capture_output=True, timeout=120
        )
        return Reply(proc.returncode, proc.stdout, proc.stderr.decode(errors="replace"))

    def _inproc(self, env: dict, stdin: bytes) -> Reply:
        from nsveth import dispatch, netns as nsmod

        fd = nsmod.open_path(self.host.path)
        try:
            with nsmod.entered(fd):
                out, status = dispatch.run(env, stdin)
        finally:
            os.close(fd)
        return Reply(status, out)


class Network:
    """A CNI network for one test: unique name, private IPAM and runtime dirs."""

    def __init__(self, tmp: str, subnet: str = "10.77.0.0/24", **fields: Any) -> None:
        self.name = unique("nt-")
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

    def leases(self) -> list[str]:
        d = os.path.join(self.ipam_dir, self.name)
        if not os.path.isdir(d):
            return []
        return sorted(f for f in os.listdir(d) if f not in ("lock",) and not f.startswith("last_reserved_ip"))

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
