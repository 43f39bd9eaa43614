"""A private CNI environment for end-to-end tests of the built nsveth executable.

Everything a test needs lives under one temporary directory that is removed
afterwards: a plugin directory (symlinks to Debian's /usr/lib/cni/* plus the
nsveth bundle's executable), a network config directory, the libcni result cache
and the host-local dataDir. Plugins run inside a throwaway "host" netns
(cnitool is started with ``ip netns exec``), so the host-side veths, routes and
firewall rules never reach the machine. /etc/cni, /opt/cni/bin and /var/lib/cni
are never written: runtimes that only know those paths (ctr, podman) see private
copies through a mount namespace, see ``Sandbox``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import support
from support import load_example, netns_add, netns_delete, netns_path, run, unique

REPO = Path(support.REPO)
CNITOOL = Path(support.CNITOOL)
# The executable of the built one-dir bundle (NSVETH_E2E_BUNDLE: another build of it).
NSVETH_BUNDLE = Path(os.environ.get("NSVETH_E2E_BUNDLE", REPO / "dist" / "nsveth" / "nsveth"))
SYSTEM_PLUGIN_DIR = Path("/usr/lib/cni")
CONF_EXAMPLES = Path(support.CONF_EXAMPLES)

# The plugin under test. The e2e suite exists to prove nsveth, so that is the
# default; NSVETH_E2E_PLUGIN=ptp runs the same tests against Debian's reference
# ptp plugin (useful to tell a test bug from a plugin bug).
PLUGIN = os.environ.get("NSVETH_E2E_PLUGIN", "nsveth")

# The netns beyond the host (CniEnv.make_outside): TEST-NET-1, never routed anywhere.
OUTSIDE_ADDR = "192.0.2.2"
OUTSIDE_LINK_PREFIX = "nsveo"
# nsveth's default runtime dir, where a Sandbox puts the env's runtime dir.
RUN_NSVETH = "/run/nsveth"


def in_ns(ns: str, *cmd: str | os.PathLike[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *map(str, cmd)]


def read_sysctl(ns: str, key: str, ifname: str) -> str:
    """Value of a net.* sysctl inside netns ns, whitespace-normalised (the kernel prints tabs).

    The key is in dot or slash form (the first separator decides, as for runc and the kubelet),
    with the IFNAME placeholder replaced by ifname.
    """
    sep = next((c for c in key if c in "./"), ".")
    segments = [ifname if s == "IFNAME" else s for s in key.split(sep)]
    return " ".join(run(in_ns(ns, "cat", "/proc/sys/" + "/".join(segments))).stdout.split())


def links(ns: str) -> list[dict[str, Any]]:
    return support.ip_json(ns, "-d", "link", "show")


def veths(ns: str) -> list[dict[str, Any]]:
    return [link for link in links(ns) if link.get("linkinfo", {}).get("info_kind") == "veth"]


# --------------------------------------------------------------------------- firewall

_COUNTERS = re.compile(r"\[\d+:\d+\]")


def firewall_snapshot(ns: str) -> dict[str, list[str]]:
    """Normalised iptables/ip6tables/nft rulesets of netns ns (comments and counters dropped)."""
    snap: dict[str, list[str]] = {}
    for tool in ("iptables-save", "ip6tables-save"):
        out = run(in_ns(ns, tool), check=False).stdout
        snap[tool] = [_COUNTERS.sub("", line).rstrip() for line in out.splitlines() if line and not line.startswith("#")]
    out = run(in_ns(ns, "nft", "list", "ruleset"), check=False).stdout
    snap["nft"] = [re.sub(r"counter packets \d+ bytes \d+", "counter", line).strip() for line in out.splitlines()
                   if line.strip()]
    return snap


def firewall_lines_mentioning(snap: dict[str, list[str]], *needles: str) -> list[str]:
    return [f"{tool}: {line}" for tool, lines in snap.items() for line in lines
            if any(n and n in line for n in needles)]


# --------------------------------------------------------------------------- configs

def example_params() -> list[Any]:
    """pytest params for the network configs in conf-examples/ (conflists only: podman reads nothing else)."""
    import pytest

    files = [Path(p) for p in support.examples(".conflist")]
    if not files:
        # No example at all must not turn these tests into silent no-ops.
        return [pytest.param(None, id="no-examples")]
    return [pytest.param(p, id=p.name) for p in files]


def plugin_entries(conf: dict[str, Any]) -> list[dict[str, Any]]:
    return conf["plugins"] if "plugins" in conf else [conf]


def main_plugin(conf: dict[str, Any]) -> dict[str, Any]:
    """The nsveth (or stand-in) entry of a conf or conflist."""
    for p in plugin_entries(conf):
        if p.get("type") in ("nsveth", PLUGIN):
            return p
    raise AssertionError(f"no {PLUGIN} plugin in config {conf.get('name')}")


@dataclass
class CniEnv:
    """Temp dirs, a throwaway host netns and a cnitool wired to them."""

    root: Path
    host_ns: str
    outside_ns: str | None = None  # see make_outside()
    plugin_dir: Path = field(init=False)
    conf_dir: Path = field(init=False)
    cache_dir: Path = field(init=False)
    ipam_dir: Path = field(init=False)
    runtime_dir: Path = field(init=False)
    # NSVETH_SOCKET for the plugins cnitool runs: "off" (in-process), or a warm server's socket.
    serve_socket: str = field(default="off", init=False)

    def __post_init__(self) -> None:
        self.plugin_dir = self.root / "bin"
        self.conf_dir = self.root / "net.d"
        self.cache_dir = self.root / "cache"
        self.runtime_dir = self.root / "run"  # nsveth's state records and locks (default /run/nsveth)
        self.etc_dir = self.root / "etc-nsveth"  # /etc/cni/nsveth: the sysctl allowlist
        # host-local's default dataDir is /var/lib/cni/networks: the same place under the libcni
        # cache dir, so an example without a dataDir keeps its leases here too (see binds()).
        self.ipam_dir = self.cache_dir / "networks"
        for d in (self.plugin_dir, self.conf_dir, self.cache_dir, self.ipam_dir, self.runtime_dir, self.etc_dir):
            d.mkdir(parents=True, exist_ok=True)
        # What the README's install puts there: the Kubernetes safe set, root-owned, 0644.
        allowlist = self.etc_dir / "allowlist.conf"
        shutil.copyfile(support.SHIPPED_ALLOWLIST, allowlist)
        allowlist.chmod(0o644)
        for plugin in sorted(SYSTEM_PLUGIN_DIR.iterdir()):
            (self.plugin_dir / plugin.name).symlink_to(plugin)
        # A symlink, not a copy: the bundle's executable finds its _internal/ via the real path.
        (self.plugin_dir / "nsveth").symlink_to(NSVETH_BUNDLE)

    # Set when create() made the mount point /run/nsveth on the machine (close() removes it).
    made_run_nsveth: bool = False

    @classmethod
    def create(cls) -> CniEnv:
        if PLUGIN == "nsveth" and not NSVETH_BUNDLE.is_file():
            raise AssertionError(f"{NSVETH_BUNDLE} is missing: run ./build.sh first")
        root = Path(tempfile.mkdtemp(prefix="nsv-e2e-"))
        host = netns_add("nsve2e-h-")
        try:
            run(["ip", "-n", host, "link", "set", "lo", "up"])
            env = cls(root, host)
            # The Sandbox binds the env's runtime dir over /run/nsveth. A missing mount point would
            # be made on an overlay of /run, which would hide the netns mounts under /run/netns, so
            # an empty one is made on the machine's /run (a tmpfs) and removed again by close().
            try:
                os.mkdir(RUN_NSVETH, 0o700)
                env.made_run_nsveth = True
            except FileExistsError:
                pass
            return env
        except BaseException:
            netns_delete(host)
            shutil.rmtree(root, ignore_errors=True)
            raise

    def close(self) -> None:
        if self.outside_ns:
            netns_delete(self.outside_ns)
        netns_delete(self.host_ns)
        shutil.rmtree(self.root, ignore_errors=True)
        if self.made_run_nsveth:
            try:
                os.rmdir(RUN_NSVETH)
            except OSError:
                pass  # something else uses it now

    def binds(self) -> dict[str, Path]:
        """The default paths an unchanged example uses, for a Sandbox: libcni's cache and
        host-local's leases (/var/lib/cni), nsveth's runtime dir and its allowlist."""
        return {"/etc/cni/nsveth": self.etc_dir, RUN_NSVETH: self.runtime_dir, "/var/lib/cni": self.cache_dir}

    def make_outside(self) -> str:
        """A netns beyond the host: a veth from the host netns to it, 192.0.2.1/24 on the host end,
        192.0.2.2/24 on its end, and no other route there. A pod reaches OUTSIDE_ADDR only when
        its traffic is masqueraded (the outside has no route back to a pod subnet). Returns it."""
        if self.outside_ns is None:
            self.outside_ns = netns_add("nsve2e-o-")
            link = unique(OUTSIDE_LINK_PREFIX)
            run(["ip", "-n", self.host_ns, "link", "add", link, "type", "veth", "peer", "name", "out0",
                 "netns", self.outside_ns])
            run(["ip", "-n", self.host_ns, "addr", "add", "192.0.2.1/24", "dev", link])
            run(["ip", "-n", self.host_ns, "link", "set", link, "up"])
            run(["ip", "-n", self.outside_ns, "addr", "add", f"{OUTSIDE_ADDR}/24", "dev", "out0"])
            run(["ip", "-n", self.outside_ns, "link", "set", "out0", "up"])
            run(["ip", "-n", self.outside_ns, "link", "set", "lo", "up"])
        return OUTSIDE_ADDR

    def forward_drop(self) -> None:
        """The host's FORWARD policy DROP, as on any Docker host."""
        run(in_ns(self.host_ns, "iptables", "-P", "FORWARD", "DROP"))

    # ---- configs
    def adapt(self, conf: dict[str, Any], *, name: str | None = None,
              cni_version: str | None = None) -> dict[str, Any]:
        """A copy of conf whose host-local state lives in this env and whose plugin is PLUGIN."""
        conf = copy.deepcopy(conf)
        if name:
            conf["name"] = name
        if cni_version:
            conf["cniVersion"] = cni_version
        for p in plugin_entries(conf):
            if p.get("type") == "nsveth":
                p["type"] = PLUGIN
                if PLUGIN == "nsveth":
                    p["runtimeDir"] = str(self.runtime_dir)
            ipam = p.get("ipam")
            if isinstance(ipam, dict) and ipam.get("type") == "host-local":
                ipam["dataDir"] = str(self.ipam_dir)
        return conf

    def write_conf(self, conf: dict[str, Any], conf_dir: Path | None = None) -> Path:
        """Writes adapt(conf) as <name>.conflist (or .conf) into conf_dir (default: the env's)."""
        conf_dir = conf_dir or self.conf_dir
        conf_dir.mkdir(parents=True, exist_ok=True)
        ext = ".conflist" if "plugins" in conf else ".conf"
        path = conf_dir / f"{conf['name']}{ext}"
        path.write_text(json.dumps(self.adapt(conf), indent=2))
        return path

    # ---- cnitool
    def cnitool(self, command: str, network: str, netns: str | None = None, *, ifname: str = "eth0",
                cap_args: dict[str, Any] | None = None, cni_args: str = "", conf_dir: Path | None = None,
                extra_env: dict[str, str] | None = None, check: bool = True,
                sandbox: Sandbox | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env.update({
            "NETCONFPATH": str(conf_dir or self.conf_dir),
            "CNI_PATH": str(self.plugin_dir),
            "CNI_CACHE_DIR": str(self.cache_dir),
            "CNI_IFNAME": ifname,
            "CNI_ARGS": cni_args,
            "CAP_ARGS": json.dumps(cap_args) if cap_args else "",
            "NSVETH_SOCKET": self.serve_socket,
        })
        env.update(extra_env or {})
        args: list[str] = [command, network] + ([netns] if netns else [])
        if sandbox is not None:
            return sandbox.run(CNITOOL, *args, env=env, check=check)
        return run(in_ns(self.host_ns, CNITOOL, *args), env=env, check=check)

    def add(self, network: str, netns: str, **kw: Any) -> dict[str, Any]:
        return json.loads(self.cnitool("add", network, netns, **kw).stdout)

    # ---- state
    @staticmethod
    def container_id(netns: str) -> str:
        """What cnitool (like upstream) derives from the netns path."""
        return "cnitool-" + hashlib.sha512(os.path.abspath(netns).encode()).hexdigest()[:20]

    def cache_file(self, network: str, container_id: str, ifname: str = "eth0") -> Path:
        return self.cache_dir / "results" / f"{network}-{container_id}-{ifname}"

    def leases(self, network: str, ipam_dir: Path | None = None) -> dict[str, str]:
        """host-local lease files of a network: IP -> file content."""
        d = (ipam_dir or self.ipam_dir) / network
        if not d.is_dir():
            return {}
        return {p.name: p.read_text() for p in d.iterdir()
                if p.name != "lock" and not p.name.startswith("last_reserved_ip")}

    def records(self, network: str) -> list[str]:
        """nsveth's per-attachment state records of a network."""
        d = self.runtime_dir / network
        return sorted(p.name for p in d.glob("*.json")) if d.is_dir() else []

    def host_veths(self) -> list[dict[str, Any]]:
        """The host netns's veths, but for the link to the outside netns."""
        return [v for v in veths(self.host_ns) if not v["ifname"].startswith(OUTSIDE_LINK_PREFIX)]


# --------------------------------------------------------------------------- result checks

def pod_iface(result: dict[str, Any], ifname: str, netns: str) -> tuple[int, dict[str, Any]]:
    for idx, iface in enumerate(result.get("interfaces", [])):
        if iface.get("name") == ifname and iface.get("sandbox") == netns:
            return idx, iface
    raise AssertionError(f"result has no interface {ifname} with sandbox {netns}: {result}")


def host_ifaces(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in result.get("interfaces", []) if not i.get("sandbox")]


def addr_set(ns: str, ifname: str) -> set[str]:
    [link] = support.ip_json(ns, "-d", "addr", "show", "dev", ifname)
    return {f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("scope") == "global"}


def routes(ns: str, family: str = "-4") -> list[dict[str, Any]]:
    return support.ip_json(ns, "-d", family, "route", "show", "table", "main")


def route_dsts(ns: str, family: str = "-4") -> set[str]:
    return {r["dst"] for r in routes(ns, family)}


# --------------------------------------------------------------------------- OCI image

BUSYBOX = Path("/bin/busybox")


def _tar_bytes(entries: Iterator[tuple[Any, bytes | None]]) -> bytes:
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _tarinfo(name: str, *, kind: bytes, mode: int, size: int = 0, linkname: str = "") -> Any:
    import tarfile
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, size, linkname
    info.mtime = 0
    return info


def build_busybox_image(dest: Path, ref: str, cmd: Sequence[str] = ("/bin/sh",)) -> Path:
    """Write an image archive holding a one-layer busybox rootfs made from Debian's busybox-static.

    The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/*) that also carries a
    docker-save style manifest.json, so both ``ctr image import`` and ``podman load`` accept it.
    cmd is the image's default command (containerd's CRI runs a pause-like sandbox image: the same
    rootfs with a long sleep).
    """
    import tarfile
    busybox = BUSYBOX.read_bytes()
    applets = run([BUSYBOX, "--list"]).stdout.split()

    def rootfs() -> Iterator[tuple[Any, bytes | None]]:
        for d in ("bin", "dev", "etc", "proc", "sys", "tmp", "root", "run"):
            yield _tarinfo(d, kind=tarfile.DIRTYPE, mode=0o1777 if d == "tmp" else 0o755), None
        yield _tarinfo("bin/busybox", kind=tarfile.REGTYPE, mode=0o755, size=len(busybox)), busybox
        for a in applets:
            if a != "busybox":
                yield _tarinfo(f"bin/{a}", kind=tarfile.SYMTYPE, mode=0o777, linkname="busybox"), None
        for name, text in (("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"), ("etc/group", b"root:x:0:\n")):
            yield _tarinfo(name, kind=tarfile.REGTYPE, mode=0o644, size=len(text)), text

    layer = _tar_bytes(rootfs())
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Cmd": list(cmd), "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "nsveth e2e busybox-static"}],
    }, sort_keys=True).encode()
    config_digest = hashlib.sha256(config).hexdigest()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": f"sha256:{config_digest}", "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": f"sha256:{layer_digest}", "size": len(layer)}],
    }, sort_keys=True).encode()
    manifest_digest = hashlib.sha256(manifest).hexdigest()
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": f"sha256:{manifest_digest}", "size": len(manifest),
                       "annotations": {"io.containerd.image.name": ref,
                                       "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[-1]}}],
    }).encode()
    docker_manifest = json.dumps([{"Config": f"blobs/sha256/{config_digest}", "RepoTags": [ref],
                                   "Layers": [f"blobs/sha256/{layer_digest}"]}]).encode()

    def archive() -> Iterator[tuple[Any, bytes | None]]:
        yield _tarinfo("blobs", kind=tarfile.DIRTYPE, mode=0o755), None
        yield _tarinfo("blobs/sha256", kind=tarfile.DIRTYPE, mode=0o755), None
        for digest, blob in ((layer_digest, layer), (config_digest, config), (manifest_digest, manifest)):
            yield _tarinfo(f"blobs/sha256/{digest}", kind=tarfile.REGTYPE, mode=0o644, size=len(blob)), blob
        for name, blob in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index),
                           ("manifest.json", docker_manifest)):
            yield _tarinfo(name, kind=tarfile.REGTYPE, mode=0o644, size=len(blob)), blob

    dest.write_bytes(_tar_bytes(archive()))
    return dest


# --------------------------------------------------------------------------- containerd

_CONTAINERD_CONFIG = """\
version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = [
{cri_off}  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]
[grpc]
  address = "{root}/containerd.sock"
[ttrpc]
  address = "{root}/containerd.sock.ttrpc"
[debug]
  address = ""
  level = "{level}"
[metrics]
  address = ""
"""


def containerd_config(root: Path, cri: str = "") -> str:
    """The config.toml of a private containerd whose state, sockets and snapshots live under root.
    cri: the CRI plugin's section (then it logs at debug level); without one the CRI plugin is off."""
    cri_off = "" if cri else '  "io.containerd.grpc.v1.cri",\n'
    return _CONTAINERD_CONFIG.format(root=root, cri_off=cri_off, level="debug" if cri else "info") + cri


# --------------------------------------------------------------------------- mount-namespace sandbox

_SANDBOX_SCRIPT = r"""
set -eu
# Replace each target path with a private directory, in this mount namespace only.
while [ "$#" -gt 1 ] && [ "$1" != "--" ]; do
  src=$1 dst=$2; shift 2
  if [ ! -d "$dst" ]; then
    # dst is missing on the machine: overlay its nearest existing ancestor with a
    # scratch upper dir so creating the mount point writes nothing to the real disk.
    anc=$dst
    while [ ! -d "$anc" ]; do anc=$(dirname "$anc"); done
    scratch=$(mktemp -d "$SANDBOX_SCRATCH/ovl.XXXXXX")
    mkdir "$scratch/upper" "$scratch/work"
    mount -t overlay overlay -o "lowerdir=$anc,upperdir=$scratch/upper,workdir=$scratch/work" "$anc"
    mkdir -p "$dst"
  fi
  mount --bind "$src" "$dst"
done
shift
# Like `ip netns exec`, give /sys the view of this netns (plugins read /sys/class/net), but keep
# the cgroup hierarchies: runc needs them.
cg=$(mktemp -d "$SANDBOX_SCRATCH/cgroup.XXXXXX")
mount --rbind /sys/fs/cgroup "$cg"
mount -t sysfs sysfs /sys
mount --rbind "$cg" /sys/fs/cgroup
exec "$@"
"""


class Sandbox:
    """A long-lived process whose mount namespace has private bind mounts and whose netns is ns.

    Commands run inside it with nsenter, so several runtime commands (podman run, podman rm, ...)
    share one view of /etc/cni/net.d, /opt/cni/bin, /var/lib/cni and so on, while the machine's
    directories stay untouched. /sys is remounted for ns, as ``ip netns exec`` does, with the cgroup
    hierarchies kept.
    """

    def __init__(self, ns: str, binds: dict[str, Path], scratch: Path) -> None:
        scratch.mkdir(parents=True, exist_ok=True)
        args: list[str] = []
        # A missing target is made on an overlay of its nearest existing ancestor, which hides
        # mounts below that ancestor: those come first, so no earlier bind is hidden.
        for dst, src in sorted(binds.items(), key=lambda kv: os.path.isdir(kv[0])):
            args += [str(src), dst]
        env = dict(os.environ, SANDBOX_SCRATCH=str(scratch))
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "nsenter", f"--net={netns_path(ns)}",
             "sh", "-c", _SANDBOX_SCRIPT, "sandbox", *args, "--", "sleep", "3600"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.ns = ns
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"sandbox failed to start: {self.proc.stderr.read() if self.proc.stderr else ''}")
            try:
                exe = os.readlink(f"/proc/{self.proc.pid}/exe")
            except OSError:
                exe = ""
            if exe.endswith("/sleep"):
                break
            if time.monotonic() > deadline:
                self.close()
                raise AssertionError("sandbox did not start in 10 s")
            time.sleep(0.02)

    def cmd(self, *argv: str | os.PathLike[str]) -> list[str]:
        pid = self.proc.pid
        return ["nsenter", f"--mount=/proc/{pid}/ns/mnt", f"--net=/proc/{pid}/ns/net", "--", *map(str, argv)]

    def run(self, *argv: str | os.PathLike[str], check: bool = True, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run(self.cmd(*argv), check=check, env=env, timeout=timeout)

    def popen(self, *argv: str | os.PathLike[str], env: dict[str, str] | None = None,
              log: Path | None = None) -> subprocess.Popen[bytes]:
        out = open(log, "ab") if log else subprocess.DEVNULL
        try:
            return subprocess.Popen(self.cmd(*argv), env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        finally:
            if log:
                out.close()  # type: ignore[union-attr]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def example_conflist(env: CniEnv, example: Path | None) -> dict[str, Any]:
    """An example exactly as shipped, written into the env's config dir. Run it in a Sandbox with
    env.binds(): its default paths (leases, runtime dir, allowlist) are then the env's."""
    assert example is not None, f"{CONF_EXAMPLES} has no *.conflist"
    conf = load_example(example.name)
    (env.conf_dir / example.name).write_bytes(example.read_bytes())
    return conf


def prepare_host(env: CniEnv, conf: dict[str, Any]) -> str | None:
    """The host an example is written for: with a firewall plugin in the chain, a FORWARD policy
    DROP (what that plugin is there for). Returns the outside address the pod must reach when the
    example masquerades (else None)."""
    if "firewall" in [p.get("type") for p in plugin_entries(conf)]:
        env.forward_drop()
    return env.make_outside() if main_plugin(conf).get("ipMasq") else None
