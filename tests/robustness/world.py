"""A sandboxed "node" for robustness tests, and the one property every input must satisfy.

A `World` is a throwaway host netns (forwarding already on, as on any node
that runs a CNI plugin, so the plugin's idempotent forwarding switch is not
counted as a change), a pod netns, and a sandbox dir holding a private CNI
bin dir (only host-local), the IPAM dataDir, the runtimeDir and log files.

Inputs are written with placeholders (@POD@, @HOST@, @SANDBOX@, @CNIPATH@, ...)
so a stored corpus case replays in any world. Before an input reaches the
plugin, `confine` rewrites every file path it carries (runtimeDir, logFile,
sysctlAllowlist, ipam.dataDir, ipam.resolvConf) into the sandbox, and a
missing runtimeDir / ipam.dataDir gets the sandbox one: a fuzzer must never
make the plugin write under /run, /var/lib/cni or anywhere else on the machine.
Paths stay weird (NUL bytes, huge names, unicode); only their root is fixed.

`World.exercise(case)` runs one input and checks the property of issue 8:
the plugin answers with a valid result, or with exactly one CNI error JSON on
stdout with a well-known code; never a traceback, never a hang; a failed
command changes nothing on the host (links, addresses, routes, rules,
sysctls, nftables, files), and a successful ADD is fully undone by its DEL.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import hoststate
import support
from nsveth import versions

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
SUPPORTED = versions.SUPPORTED
# CNI well-known codes plus nsveth's documented own ones; 999 (internal) and 0 are bugs.
WELL_KNOWN = {1, 2, 3, 4, 5, 6, 7, 8, 11, 50, 51, 100, 101, 102}
TIMEOUT = 30.0
SUBNET4 = "10.199.0.0/24"
SUBNET6 = "fd00:199::/64"
BRIDGE = hoststate.NODE_BRIDGE


@dataclasses.dataclass
class Case:
    """One input: environment and stdin, with placeholders."""

    env: dict[str, str]
    stdin: bytes
    label: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "env": self.env, "stdin_b64": base64.b64encode(self.stdin).decode()}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Case:
        stdin = base64.b64decode(obj["stdin_b64"]) if "stdin_b64" in obj else json.dumps(obj["stdin"]).encode()
        return cls(dict(obj["env"]), stdin, obj.get("label", ""))


class PropertyViolation(AssertionError):
    def __init__(self, msg: str, case: Case | None = None, problems: list[str] | None = None) -> None:
        super().__init__(msg)
        self.case = case
        self.problems = problems or [msg]


class World:
    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        self.cni_path = os.path.join(self.root, "bin")
        self.ipam_dir = os.path.join(self.root, "ipam")
        self.runtime_dir = os.path.join(self.root, "run")
        self.log_dir = os.path.join(self.root, "logs")
        for d in (self.cni_path, self.log_dir):
            os.makedirs(d, exist_ok=True)
        os.symlink(os.path.join(support.CNI_PATH, "host-local"), os.path.join(self.cni_path, "host-local"))
        self.fifo = os.path.join(self.root, "fifo")
        os.mkfifo(self.fifo)
        self.regular = os.path.join(self.root, "regular-file")
        with open(self.regular, "w") as f:
            f.write("not a netns\n")
        self.host = support.Netns("nsrh-")
        self.pod: support.Netns | None = None
        try:
            self.pod = support.Netns("nsrp-")
            hoststate.make_node(self.host.name)  # forwarding on, a bridge, the masquerade table
        except BaseException:
            self.close()
            raise
        self.inproc = support.Plugin(self.host, "inproc")
        self.server: support.Server | None = None  # the warm server "served" calls go through
        self.tried = 0

    def close(self) -> None:
        if self.pod is not None:
            self.pod.delete()
        self.host.delete()

    # ------------------------------------------------------------ inputs
    def tokens(self) -> dict[str, str]:
        assert self.pod is not None
        return {
            "@POD@": self.pod.path,
            "@HOST@": self.host.path,
            "@SANDBOX@": self.root,
            "@CNIPATH@": self.cni_path,
            "@FIFO@": self.fifo,
            "@REGULAR@": self.regular,
            "@RUNTIME@": self.runtime_dir,
            "@IPAMDIR@": self.ipam_dir,
        }

    def materialize(self, case: Case) -> tuple[dict[str, str], bytes]:
        tokens = self.tokens()
        env = {}
        for k, v in case.env.items():
            for tok, real in tokens.items():
                v = v.replace(tok, real)
            env[k] = v
        stdin = case.stdin
        for tok, real in tokens.items():
            stdin = stdin.replace(tok.encode(), json.dumps(real)[1:-1].encode())
        return env, self.confine(stdin)

    def inside(self, path: str) -> bool:
        return "\0" not in path and os.path.realpath(path).startswith(self.root + os.sep)

    def _sandboxed(self, value: str, sub: str) -> str:
        """A path in the sandbox that keeps the oddities of `value` but cannot climb out of it."""
        slug = value.replace("/", "_")[:200] or "_"
        if slug in (".", ".."):
            slug = "_" + slug
        return os.path.join(self.root, sub, slug)

    def confine(self, stdin: bytes) -> bytes:
        try:
            doc = json.loads(stdin.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return stdin  # the plugin cannot decode it either
        if not isinstance(doc, dict):
            return stdin
        changed = False
        if "runtimeDir" not in doc:
            doc["runtimeDir"] = self.runtime_dir
            changed = True
        for key in ("runtimeDir", "logFile", "sysctlAllowlist"):
            v = doc.get(key)
            if isinstance(v, str) and not self.inside(v):
                doc[key] = self._sandboxed(v, "out")
                changed = True
        ipam = doc.get("ipam")
        if isinstance(ipam, dict):
            d = ipam.get("dataDir")
            if not (isinstance(d, str) and self.inside(d)):
                ipam["dataDir"] = self.ipam_dir if not isinstance(d, str) or not d else self._sandboxed(d, "ipamout")
                changed = True
            r = ipam.get("resolvConf")
            if r is not None and not (isinstance(r, str) and self.inside(r)):
                ipam["resolvConf"] = self._sandboxed(str(r), "out")
                changed = True
        return json.dumps(doc).encode() if changed else stdin

    # ----------------------------------------------------------- running
    def call(self, mode: str, env: dict[str, str], stdin: bytes) -> support.Reply:
        """Run the plugin; a call that does not return within TIMEOUT is a hang."""
        if mode in ("exe", "served"):
            # exe: the executable with no server; served: it hands the request to the session's server.
            env = {**env, "NSVETH_SOCKET": self.server.socket if mode == "served" and self.server else "off"}
            with subprocess.Popen(
                ["ip", "netns", "exec", self.host.name, support.EXECUTABLE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=self.root,
            ) as proc:
                try:
                    out, err = proc.communicate(stdin, timeout=TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    raise PropertyViolation(f"hang: the executable did not finish within {TIMEOUT}s") from None
            if mode == "served" and not (self.server and self.server.served(proc.pid)):
                raise PropertyViolation(f"not served by the warm server: {err.decode(errors='replace')[-2000:]}")
            return support.Reply(proc.returncode, out, err.decode(errors="replace"))
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["reply"] = self.inproc._inproc(env, stdin)
            except BaseException as e:  # noqa: BLE001 - reported below
                box["error"] = e

        t = threading.Thread(target=target, daemon=True)
        t.start()
        t.join(TIMEOUT)
        if t.is_alive():
            raise PropertyViolation(f"hang: dispatch.run did not return within {TIMEOUT}s")
        if "error" in box:
            raise PropertyViolation(f"dispatch.run raised {box['error']!r}") from box["error"]
        return box["reply"]

    def snapshot(self) -> dict[str, Any]:
        assert self.pod is not None
        return {
            "host": hoststate.snapshot(self.host.name),
            "pod": hoststate.snapshot(self.pod.name),
            "files": hoststate.files(self.root),
        }

    def changes(self, before: dict[str, Any], after: dict[str, Any]) -> list[str]:
        problems = [f"host netns: {p}" for p in hoststate.diff(before["host"], after["host"])]
        problems += [f"pod netns: {p}" for p in hoststate.diff(before["pod"], after["pod"])]
        if before["files"] != after["files"]:
            problems.append(f"files changed: {before['files']} -> {after['files']}")
        return problems

    def forget_node_bridge(self, stdin: bytes, before: dict[str, Any]) -> None:
        """Undo what a successful bridge-mode ADD leaves on the node by design (README, bridge
        mode: DEL never removes the bridge, other pods use it): the bridge it created (a mutated
        config may name another one, or none: the default), the gateway addresses `isGateway`
        put on an existing one, `promiscMode`. Only what the config asked for is undone, so
        anything else ADD+DEL leave behind is still caught."""
        try:
            doc = json.loads(stdin)
        except ValueError:
            return
        if not isinstance(doc, dict) or doc.get("mode") != "bridge":
            return
        name = doc.get("bridge", "nsveth0")
        if not any(link.get("ifname") == name for link in before["host"]["links"]):
            self.host.run("ip", "link", "del", name, check=False)
            return
        if doc.get("isGateway") or doc.get("isDefaultGateway"):
            self.host.run("ip", "addr", "flush", "dev", name, check=False)  # the node's bridge has none
        if doc.get("promiscMode"):
            self.host.run("ip", "link", "set", name, "promisc", "off", check=False)

    def reset(self) -> None:
        """Put the world back after a failing example, so the next one starts clean."""
        assert self.pod is not None
        for name in hoststate_links(self.host.name):
            if name not in ("lo", BRIDGE, "nsrkeep0", "nsrkeep1"):
                self.host.run("ip", "link", "del", name, check=False)
        for name in hoststate_links(self.pod.name):
            if name != "lo":
                self.pod.run("ip", "link", "del", name, check=False)
        for d in (self.ipam_dir, self.runtime_dir, os.path.join(self.root, "out"), os.path.join(self.root, "ipamout")):
            shutil.rmtree(d, ignore_errors=True)

    def exercise(self, case: Case, mode: str = "inproc", save: bool = True) -> support.Reply:
        """Run one input and enforce the property; a violation carries the input (for `saved_failures`)."""
        self.tried += 1
        env, stdin = self.materialize(case)
        before = self.snapshot()
        problems: list[str] = []
        reply: support.Reply | None = None
        try:
            reply = self.call(mode, env, stdin)
            problems += check_reply(env, stdin, reply, mode)
            if reply.status == 0 and env.get("CNI_COMMAND") == "ADD":
                undo = self.call(mode, {**env, "CNI_COMMAND": "DEL"}, stdin)
                if undo.status != 0:
                    problems.append(f"DEL after a successful ADD failed: {undo.stdout!r} {undo.stderr[-2000:]}")
                self.forget_node_bridge(stdin, before)
            problems += self.changes(before, self.snapshot())
        except PropertyViolation as e:
            problems.append(str(e))
        if problems:
            self.reset()
            detail = "" if reply is None else f"\nstdout: {reply.stdout[:2000]!r}\nstderr: {reply.stderr[-3000:]}"
            raise PropertyViolation(f"{case.label}: " + "\n".join(problems) + detail, case if save else None, problems)
        assert reply is not None
        return reply


def hoststate_links(ns_name: str) -> list[str]:
    return [link["ifname"] for link in support.ip_json(ns_name, "link", "show")]


def check_reply(env: dict[str, str], stdin: bytes, reply: support.Reply, mode: str) -> list[str]:
    """The output contract: a valid result, or exactly one well-formed CNI error JSON."""
    problems = []
    command = env.get("CNI_COMMAND", "")
    if "Traceback (most recent call last)" in reply.stderr:
        problems.append(f"traceback on stderr:\n{reply.stderr[-3000:]}")
    if reply.status < 0:
        problems.append(f"killed by signal {-reply.status}")
    if not command:
        if reply.status != 0 or reply.stdout:
            problems.append("without CNI_COMMAND the plugin must print its about text on stderr and exit 0")
        return problems
    try:
        body = json.loads(reply.stdout) if reply.stdout.strip() else None
    except ValueError as e:
        return problems + [f"stdout is not exactly one JSON document ({e}): {reply.stdout[:500]!r}"]
    if reply.status not in (0, 1):
        problems.append(f"exit status {reply.status} (expected 0 or 1)")
    if reply.status != 0:
        if not isinstance(body, dict):
            return problems + [f"error reply is not a JSON object: {reply.stdout[:500]!r}"]
        extra = set(body) - {"cniVersion", "code", "msg", "details"}
        if extra:
            problems.append(f"error reply has extra keys {sorted(extra)}")
        code = body.get("code")
        if not isinstance(code, int) or isinstance(code, bool) or code not in WELL_KNOWN:
            problems.append(f"error code {code!r} is not a well-known one: {body.get('msg')!r}")
        if not isinstance(body.get("msg"), str) or not body["msg"]:
            problems.append("error reply has no msg")
        if body.get("cniVersion") not in SUPPORTED:
            problems.append(f"error reply cniVersion {body.get('cniVersion')!r}")
        if "details" in body and not isinstance(body["details"], str):
            problems.append("error details is not a string")
        return problems
    if command == "VERSION":
        if not (isinstance(body, dict) and body.get("supportedVersions") == list(SUPPORTED)):
            problems.append(f"bad VERSION reply {body!r}")
    elif command == "ADD":
        problems += _check_result(body, stdin)
    elif body is not None:
        problems.append(f"{command} succeeded but printed {reply.stdout[:300]!r}")
    return problems


def _check_result(body: Any, stdin: bytes) -> list[str]:
    if not isinstance(body, dict):
        return [f"ADD result is not an object: {body!r}"]
    problems = []
    try:
        conf_version = json.loads(stdin).get("cniVersion")
    except (ValueError, AttributeError):
        conf_version = None
    if body.get("cniVersion") != conf_version:
        problems.append(f"result cniVersion {body.get('cniVersion')!r} differs from the config's {conf_version!r}")
    interfaces = body.get("interfaces")
    ips = body.get("ips")
    # ptp: host veth, pod interface; bridge mode: bridge, host veth, pod interface.
    if not (isinstance(interfaces, list) and len(interfaces) in (2, 3) and all(isinstance(i, dict) and i.get("name") for i in interfaces)):
        return problems + [f"result interfaces {interfaces!r}"]
    in_pod = [n for n, i in enumerate(interfaces) if i.get("sandbox")]
    if len(in_pod) != 1 or in_pod[0] != len(interfaces) - 1:
        problems.append(f"result interfaces: the pod interface must be the last and only one with a sandbox: {interfaces!r}")
    if not (isinstance(ips, list) and ips):
        return problems + [f"result ips {ips!r}"]
    for ip in ips:
        try:
            ipaddress.ip_interface(ip["address"])
            if "gateway" in ip:
                ipaddress.ip_address(ip["gateway"])
        except (KeyError, TypeError, ValueError):
            problems.append(f"bad ips entry {ip!r}")
        if ip.get("interface") != len(interfaces) - 1:
            problems.append(f"ips entry not on the pod interface: {ip!r}")
    return problems


def save_case(case: Case, problems: list[str]) -> str:
    """Store an input that broke the property in the corpus (commit it once fixed)."""
    os.makedirs(CORPUS, exist_ok=True)
    blob = json.dumps(case.to_json(), sort_keys=True).encode()
    name = f"found-{hashlib.sha256(blob).hexdigest()[:10]}.json"
    path = os.path.join(CORPUS, name)
    obj = case.to_json()
    obj["found"] = problems[:5]
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
    return os.path.relpath(path, os.path.dirname(os.path.dirname(HERE)))


@contextlib.contextmanager
def saved_failures() -> Iterator[None]:
    """Store the input of the failure Hypothesis finally reports (the shrunk one) in the corpus."""
    try:
        yield
    except PropertyViolation as e:
        if e.case is not None:
            raise PropertyViolation(f"{e}\ninput saved as {save_case(e.case, e.problems)}") from e
        raise
    except BaseExceptionGroup as group:  # several distinct failures
        for e in group.exceptions:
            if isinstance(e, PropertyViolation) and e.case is not None:
                save_case(e.case, e.problems)
        raise
