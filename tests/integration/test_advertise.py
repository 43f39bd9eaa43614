"""Unsolicited ARP / NA through the real kernel: captured on the host end of the veth.

A packet socket opened in the throwaway host netns before ADD sees every frame
the pod sends (the host veth does not exist yet when the capture starts, so it
is not bound to one interface), with kernel receive timestamps. The fields of
every announcement are checked against an independent parser here, not the
plugin's builders.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from typing import Self

import pytest
import support
from support import Netns, host_veths, sh, unique

ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35
PACKET_OUTGOING = 4
MAC_A = "02:aa:00:00:00:0a"
MAC_B = "02:bb:00:00:00:0b"


# ------------------------------------------------------------------ capture
class Frame:
    def __init__(self, ts: float, ifname: str, data: bytes) -> None:
        self.ts, self.ifname, self.data = ts, ifname, data
        self.dst, self.src = _mac(data[0:6]), _mac(data[6:12])
        (self.ethertype,) = struct.unpack_from("!H", data, 12)
        self.payload = data[14:]

    @property
    def is_arp(self) -> bool:
        return self.ethertype == 0x0806

    @property
    def is_na(self) -> bool:
        p = self.payload
        return self.ethertype == 0x86DD and len(p) > 40 and p[6] == 58 and p[40] == 136


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


class Capture:
    """Every frame received in one netns (any interface), timestamped by the kernel."""

    def __init__(self, ns: Netns) -> None:
        from nsveth import netns as nsmod

        fd = nsmod.open_path(ns.path)
        try:
            with nsmod.entered(fd):
                self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        finally:
            os.close(fd)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.settimeout(0.05)
        self.frames: list[Frame] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, anc, _flags, addr = self.sock.recvmsg(65536, socket.CMSG_SPACE(16))
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            ts = time.time()
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("=qq", value[:16])
                    ts = sec + nsec / 1e9
            self.frames.append(Frame(ts, addr[0], data))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def announcements(self, mac: str) -> tuple[list[Frame], list[Frame]]:
        """(gratuitous ARP frames, multicast NA frames) sent from `mac`; the
        pod's ordinary ARP requests and solicited NAs are not counted."""
        mine = [f for f in self.frames if f.src == mac]
        arps = [f for f in mine if f.is_arp and f.payload[14:18] == f.payload[24:28]]
        return arps, [f for f in mine if f.is_na and f.dst.startswith("33:33:")]


# ------------------------------------------------------------- field checks
def assert_arp(frame: Frame, mac: str, ip: str) -> None:
    p = frame.payload
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", p)
    sha, spa, tha, tpa = p[8:14], p[14:18], p[18:24], p[24:28]
    assert frame.dst == "ff:ff:ff:ff:ff:ff" and frame.src == mac and frame.ethertype == 0x0806
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 1)
    assert _mac(sha) == mac and tha == b"\0" * 6
    assert socket.inet_ntoa(spa) == ip and socket.inet_ntoa(tpa) == ip


def _checksum_ok(src: bytes, dst: bytes, icmp: bytes) -> bool:
    data = src + dst + struct.pack("!I3xB", len(icmp), 58) + icmp + b"\0" * (len(icmp) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def assert_na(frame: Frame, mac: str, ip: str) -> None:
    p = frame.payload
    assert frame.dst == "33:33:00:00:00:01" and frame.src == mac and frame.ethertype == 0x86DD
    (vtf,) = struct.unpack_from("!I", p)
    plen, nxt, hops = struct.unpack_from("!HBB", p, 4)
    src, dst, icmp = p[8:24], p[24:40], p[40 : 40 + plen]
    assert vtf >> 28 == 6 and nxt == 58 and hops == 255 and plen == 32
    assert ipaddress.IPv6Address(src) == ipaddress.IPv6Address(ip)
    assert ipaddress.IPv6Address(dst) == ipaddress.IPv6Address("ff02::1")
    icmp_type, code = icmp[0], icmp[1]
    flags, reserved = icmp[4], icmp[5:8]
    assert (icmp_type, code) == (136, 0)
    assert _checksum_ok(src, dst, icmp)
    assert flags & 0x20, "Override must be set"
    assert not flags & 0x80 and not flags & 0x40, "Router and Solicited must be clear"
    assert flags & 0x1F == 0 and reserved == b"\0\0\0"
    assert ipaddress.IPv6Address(icmp[8:24]) == ipaddress.IPv6Address(ip)
    opt_type, opt_len, opt_mac = icmp[24], icmp[25], icmp[26:32]
    assert (opt_type, opt_len, _mac(opt_mac)) == (2, 1, mac)


def assert_spacing(frames: list[Frame], interval_s: float) -> None:
    """Round k leaves k intervals after the first: never early (the sender keeps
    an absolute schedule), late at most by what a loaded machine explains."""
    offsets = [f.ts - frames[0].ts for f in frames]
    for k, offset in enumerate(offsets):
        assert k * interval_s - 0.01 <= offset <= k * interval_s + 0.5 * interval_s + 0.1, offsets


# ------------------------------------------------------------------ helpers
def sender_pid(net: support.Network, cid: str) -> int:
    adv = net.record(cid).get("advertiser")
    assert adv and adv["pid"] > 1 and adv["start"] > 0, adv
    return adv["pid"]


def alive(pid: int) -> bool:
    from nsveth import advertise

    return advertise.start_time(pid) is not None


def wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class Senders(list[int]):
    """The announcement senders a test started, by pid."""

    def track(self, net: support.Network, cid: str) -> int:
        """The pid of the sender of attachment cid (from its record, just made), tracked."""
        pid = sender_pid(net, cid)
        self.append(pid)
        return pid

    def add(self, plugin: support.Plugin, conf: dict, cid: str, pod: Netns, net: support.Network) -> tuple[support.Reply, int]:
        """ADD, which must succeed, and the pid of its sender, tracked."""
        add = plugin.run("ADD", conf, container_id=cid, netns=pod.path)
        assert add.status == 0, add.stdout
        return add, self.track(net, cid)


@pytest.fixture
def sender_guard():
    """Kill any sender a failing test leaves behind (never one it did not start)."""
    pids = Senders()
    yield pids
    for pid in pids:
        # Only pids a test took from a record it just made (its sender, or gone).
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            wait_dead(pid, 1.0)


def dual(net: support.Network, version: str = "1.0.0", **fields) -> dict:
    return net.conf(version, subnets=["10.77.0.0/24", "fd00:77::/64"], **fields)


def pod_mac(reply: support.Reply) -> str:
    return reply.json["interfaces"][1]["mac"]


# -------------------------------------------------------------------- tests
def test_every_field_count_and_spacing(plugin, pod_ns, net, sender_guard):
    """Three rounds for an IPv4 and an IPv6 address: exact fields, spacing, ADD back before round 2."""
    # 1 s apart: the executable's own exit (interpreter teardown) can take a
    # few hundred ms on a loaded machine, and ADD has returned only after it.
    conf = dual(net, advertise={"count": 3, "intervalMs": 1000})
    with Capture(plugin.host) as cap:
        add = plugin.run("ADD", conf, container_id="c-fields", netns=pod_ns.path)
        returned = time.time()
        assert add.status == 0, add.stdout
        sender_guard.track(net, "c-fields")
        mac = pod_mac(add)
        host_if = add.json["interfaces"][0]["name"]
        assert wait_dead(sender_guard[0], 4.0), "the sender must exit after its last round"
        time.sleep(0.3)
    arps, nas = cap.announcements(mac)
    assert len(arps) == 3 and len(nas) == 3, (len(arps), len(nas))
    for f in arps:
        assert f.ifname == host_if
        assert_arp(f, mac, "10.77.0.2")
    for f in nas:
        assert f.ifname == host_if
        assert_na(f, mac, "fd00:77::2")
    assert_spacing(arps, 1.0)
    assert_spacing(nas, 1.0)
    assert returned < arps[1].ts and returned < nas[1].ts, "ADD must not wait for the second round"
    dele = plugin.run("DEL", conf, container_id="c-fields", netns=pod_ns.path)
    assert dele.status == 0, dele.stdout


@pytest.mark.parametrize("count", [1, 2])
def test_count_is_the_number_of_rounds(inproc, pod_ns, net, count, sender_guard):
    conf = dual(net, advertise={"count": count, "intervalMs": 100})
    with Capture(inproc.host) as cap:
        add = inproc.run("ADD", conf, container_id="c-count", netns=pod_ns.path)
        assert add.status == 0, add.stdout
        if count == 1:
            assert net.record("c-count")["advertiser"] is None, "one round needs no sender"
        else:
            sender_guard.track(net, "c-count")
        time.sleep(0.6)
    arps, nas = cap.announcements(pod_mac(add))
    assert (len(arps), len(nas)) == (count, count)
    assert inproc.run("DEL", conf, container_id="c-count", netns=pod_ns.path).status == 0


def test_ipv4_only_and_default_interval(inproc, pod_ns, net, sender_guard):
    """Defaults: 3 rounds, 1000 ms apart; no NA for an IPv4-only pod."""
    conf = net.conf()
    with Capture(inproc.host) as cap:
        add = inproc.run("ADD", conf, container_id="c-v4", netns=pod_ns.path)
        assert add.status == 0, add.stdout
        sender_guard.track(net, "c-v4")
        assert wait_dead(sender_guard[0], 3.5)
    arps, nas = cap.announcements(pod_mac(add))
    assert len(arps) == 3 and nas == []
    for f in arps:
        assert_arp(f, pod_mac(add), "10.77.0.2")
    assert_spacing(arps, 1.0)
    assert inproc.run("DEL", conf, container_id="c-v4", netns=pod_ns.path).status == 0


def test_count_zero_sends_nothing(plugin, pod_ns, net):
    conf = dual(net, advertise={"count": 0})
    with Capture(plugin.host) as cap:
        add = plugin.run("ADD", conf, container_id="c-zero", netns=pod_ns.path)
        assert add.status == 0, add.stdout
        time.sleep(0.5)
        # The capture does see the pod: its ARP request for the gateway.
        pod_ns.run("ping", "-c1", "-W1", "10.77.0.1", check=False)
        time.sleep(0.1)
    assert net.record("c-zero")["advertiser"] is None
    assert any(f.is_arp and f.src == pod_mac(add) for f in cap.frames)
    assert cap.announcements(pod_mac(add)) == ([], [])
    assert plugin.run("DEL", conf, container_id="c-zero", netns=pod_ns.path).status == 0


def test_add_through_a_real_client_does_not_wait_for_the_sender(exe, pod_ns, net, sender_guard):
    """Like libcni: run the executable with stdout on a pipe and read until EOF.

    Were the sender to keep the plugin's stdout (or stderr) open, EOF would
    come only when it exits, two intervals (4 s) later, and it would be dead
    by the time ADD returns.
    """
    conf = dual(net, advertise={"count": 3, "intervalMs": 2000})
    env = exe.env("ADD", container_id="c-client", netns=pod_ns.path)
    started = time.monotonic()
    proc = subprocess.run(
        ["ip", "netns", "exec", exe.host.name, support.EXECUTABLE],
        input=json.dumps(conf).encode(),
        env=env,
        capture_output=True,
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout
    pid = sender_guard.track(net, "c-client")
    assert elapsed < 3.0, f"ADD took {elapsed:.2f}s: the sender kept the output pipe open?"
    assert alive(pid), "the sender must still be running after ADD returned"
    fds = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    lock = os.path.join(net.runtime_dir, net.name, "c-client:eth0.sender")  # the sender lock it holds
    assert all(fd in ("/dev/null", lock) or fd.startswith("socket:") for fd in fds), fds
    assert json.loads(proc.stdout)["ips"][0]["address"] == "10.77.0.2/24"
    assert exe.run("DEL", conf, container_id="c-client", netns=pod_ns.path).status == 0
    assert not alive(pid)


def test_add_through_cnitool_returns_at_once(exe, pod_ns, net, tmp_path, sender_guard):
    """The same through libcni itself (cnitool reads the plugin's stdout until EOF)."""
    tool = os.environ.get("NSVETH_CNITOOL") or support.build_cnitool()
    conf = dual(net, advertise={"count": 3, "intervalMs": 2000})
    confdir, bindir = tmp_path / "netconf", tmp_path / "bin"
    confdir.mkdir()
    bindir.mkdir()
    (confdir / "10-nsveth.conf").write_text(json.dumps(conf))
    os.symlink(support.EXECUTABLE, bindir / "nsveth")
    os.symlink(os.path.join(support.CNI_PATH, "host-local"), bindir / "host-local")
    env = {
        "NETCONFPATH": str(confdir),
        "CNI_PATH": str(bindir),
        "CNI_CACHE_DIR": str(tmp_path / "cache"),
        "PATH": os.environ["PATH"],
    }

    def cnitool(command: str) -> subprocess.CompletedProcess:
        argv = ["ip", "netns", "exec", exe.host.name, tool, command, net.name, pod_ns.path]
        return subprocess.run(argv, env=env, capture_output=True, timeout=30)

    started = time.monotonic()
    proc = cnitool("add")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    (name,) = net.state_files()
    pid = sender_guard.track(net, name.split(":")[0])
    assert elapsed < 3.0, f"cnitool add took {elapsed:.2f}s"
    assert alive(pid)
    proc = cnitool("del")
    assert proc.returncode == 0, proc.stderr
    assert not alive(pid)


def test_del_stops_a_running_sender(plugin, pod_ns, net, sender_guard):
    conf = dual(net, advertise={"count": 3, "intervalMs": 1000})
    _, pid = sender_guard.add(plugin, conf, "c-del", pod_ns, net)
    assert alive(pid)
    dele = plugin.run("DEL", conf, container_id="c-del", netns=pod_ns.path)
    assert dele.status == 0, dele.stdout
    # Gone now, not at its next round (which would notice the missing link a second later).
    assert not alive(pid)


def test_gc_stops_the_sender_of_a_released_attachment(inproc, pod_ns, net, sender_guard):
    conf = dual(net, "1.1.0", advertise={"count": 3, "intervalMs": 1000})
    _, pid = sender_guard.add(inproc, conf, "c-gc", pod_ns, net)
    gc = inproc.run("GC", {**conf, "cni.dev/valid-attachments": []})
    assert gc.status == 0, gc.stdout
    assert not alive(pid) and host_veths(inproc.host) == []


def test_sender_holds_no_lock(inproc, pod_ns, net, sender_guard):
    """GC takes the network's lock exclusively: it must not wait for the sender."""
    conf = dual(net, "1.1.0", advertise={"count": 3, "intervalMs": 2000})
    _, pid = sender_guard.add(inproc, conf, "c-lock", pod_ns, net)
    started = time.monotonic()
    gc = inproc.run("GC", {**conf, "cni.dev/valid-attachments": [{"containerID": "c-lock", "ifname": "eth0"}]})
    assert gc.status == 0, gc.stdout
    assert time.monotonic() - started < 3.0  # the sender runs for 4 s
    assert alive(pid), "GC kept the attachment, so its sender runs on"
    assert inproc.run("DEL", conf, container_id="c-lock", netns=pod_ns.path).status == 0


def test_deleting_the_interface_stops_the_sender(inproc, pod_ns, net, sender_guard):
    conf = dual(net, advertise={"count": 3, "intervalMs": 1000})
    _, pid = sender_guard.add(inproc, conf, "c-gone", pod_ns, net)
    first = time.monotonic()
    pod_ns.run("ip", "link", "del", "eth0")
    # It notices at its second round (1 s); a sender that ignored the link
    # would try and fail for another second.
    assert wait_dead(pid, 1.6), "the sender must stop when its interface is gone"
    assert time.monotonic() - first < 1.7
    assert inproc.run("DEL", conf, container_id="c-gone", netns=pod_ns.path).status == 0


def test_mac_change_stops_the_sender(inproc, pod_ns, net, sender_guard):
    conf = dual(net, advertise={"count": 3, "intervalMs": 500})
    with Capture(inproc.host) as cap:
        add, pid = sender_guard.add(inproc, conf, "c-mac", pod_ns, net)
        pod_ns.run("ip", "link", "set", "eth0", "address", MAC_B)
        assert wait_dead(pid, 1.0)
        time.sleep(0.7)  # past where round 3 would have been
    old = cap.announcements(pod_mac(add))
    new = cap.announcements(MAC_B)
    assert (len(old[0]), len(old[1])) == (1, 1), "only the first round, from ADD"
    assert new == ([], [])
    assert inproc.run("DEL", conf, container_id="c-mac", netns=pod_ns.path).status == 0


# ------------------------------------------------------------ IPv6 hygiene
def test_ipv6_hygiene(inproc, pod_ns, net):
    """Addresses without DAD (never tentative), IPv6 off on an IPv4-only pod,
    no router advertisements taken on the host end."""
    conf = dual(net, advertise={"count": 1})
    add = inproc.run("ADD", conf, container_id="c-v6", netns=pod_ns.path)
    assert add.status == 0, add.stdout
    host_if = add.json["interfaces"][0]["name"]
    (link,) = pod_ns.ip_json("-6", "addr", "show", "dev", "eth0")
    (info,) = [a for a in link["addr_info"] if a.get("scope") == "global"]
    assert info["local"] == "fd00:77::2"
    assert info.get("nodad") is True and not info.get("tentative") and not info.get("dadfailed"), info
    assert pod_ns.sysctl("net/ipv6/conf/eth0/disable_ipv6") == "0"
    assert inproc.host.sysctl(f"net/ipv6/conf/{host_if}/accept_ra") == "0"
    assert inproc.run("DEL", conf, container_id="c-v6", netns=pod_ns.path).status == 0

    v4 = net.conf(advertise={"count": 1})
    add = inproc.run("ADD", v4, container_id="c-v4only", netns=pod_ns.path)
    assert add.status == 0, add.stdout
    assert pod_ns.sysctl("net/ipv6/conf/eth0/disable_ipv6") == "1"
    assert pod_ns.ip_json("-6", "addr", "show", "dev", "eth0") == []  # not even a link-local address
    assert inproc.host.sysctl(f"net/ipv6/conf/{add.json['interfaces'][0]['name']}/accept_ra") == "0"
    assert inproc.run("DEL", v4, container_id="c-v4only", netns=pod_ns.path).status == 0


# ---------------------------------------------------- IP reuse, neighbours
def _one_address_ipam(net: support.Network) -> dict:
    """host-local with a single IPv4 and a single IPv6 address: the next pod gets the same IPs."""
    return {
        "type": "host-local",
        "dataDir": net.ipam_dir,
        "ranges": [
            [{"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.2", "rangeEnd": "10.77.0.2", "gateway": "10.77.0.1"}],
            [{"subnet": "fd00:77::/64", "rangeStart": "fd00:77::2", "rangeEnd": "fd00:77::2", "gateway": "fd00:77::1"}],
        ],
    }


def _neigh(ns: Netns, ip: str, dev: str) -> dict | None:
    for entry in ns.ip_json("neigh", "show", "to", ip, "dev", dev):
        if entry.get("dst") == ip:
            return entry
    return None


class _Outgoing(Capture):
    """Frames the netns itself sends."""

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] == PACKET_OUTGOING:
                self.frames.append(Frame(time.time(), addr[0], data))


def _concerns(frame: Frame, ips: tuple[str, ...]) -> bool:
    """An ARP for, an IPv6 packet to, or an NS about one of `ips`."""
    p = frame.payload
    if frame.is_arp:
        return socket.inet_ntoa(p[24:28]) in ips
    if frame.ethertype == 0x0800:
        return socket.inet_ntoa(p[16:20]) in ips
    if frame.ethertype == 0x86DD and len(p) >= 40:
        dst = str(ipaddress.IPv6Address(p[24:40]))
        if dst in ips:
            return True
        if p[6] == 58 and len(p) >= 64 and p[40] == 135:  # NS
            return str(ipaddress.IPv6Address(p[48:64])) in ips
    return False


@pytest.mark.parametrize("count", [3, 0])
def test_ip_reuse_in_bridge_mode(plugin, net, count, sender_guard):
    """A neighbour on the pods' bridge caches the old pod's MAC; after DEL and
    the ADD of a new pod with the same IPs it holds the new MAC, without having
    sent anything to or about those IPs. With count 0 the stale entry stays
    (so the test can fail)."""
    host = plugin.host
    br, nb = unique("nbr"), unique("nbv")
    with support.netns("nsvn-") as nbr, support.netns("nsvp-") as pod_a, support.netns("nsvp-") as pod_b:
        sh("ip", "-n", host.name, "link", "add", br, "type", "bridge")
        sh("ip", "-n", host.name, "link", "add", nb, "type", "veth", "peer", "name", "eth0", "netns", nbr.name)
        sh("ip", "-n", host.name, "link", "set", nb, "master", br, "up")
        sh("ip", "-n", host.name, "link", "set", br, "up")
        nbr.run("ip", "addr", "add", "10.77.0.200/24", "dev", "eth0")
        nbr.run("ip", "addr", "add", "fd00:77::200/64", "dev", "eth0", "nodad")
        nbr.run("ip", "link", "set", "eth0", "up")

        def conf(n: int, mac: str) -> dict:
            return net.conf(
                mode="bridge",
                bridge=br,
                ipam=_one_address_ipam(net),
                advertise={"count": n, "intervalMs": 300},
                runtimeConfig={"mac": mac},
            )

        add_a = plugin.run("ADD", conf(1, MAC_A), container_id="c-old", netns=pod_a.path)
        assert add_a.status == 0, add_a.stdout
        nbr.run("ping", "-c1", "-W1", "10.77.0.2", check=False)
        nbr.run("ping", "-6", "-c1", "-W1", "fd00:77::2", check=False)
        for ip in ("10.77.0.2", "fd00:77::2"):
            entry = _neigh(nbr, ip, "eth0")
            assert entry and entry.get("lladdr") == MAC_A, entry
        assert plugin.run("DEL", conf(1, MAC_A), container_id="c-old", netns=pod_a.path).status == 0

        with _Outgoing(nbr) as sent:
            add_b = plugin.run("ADD", conf(count, MAC_B), container_id="c-new", netns=pod_b.path)
            assert add_b.status == 0, add_b.stdout
            if count:
                # Right after ADD the first round has already landed.
                for ip in ("10.77.0.2", "fd00:77::2"):
                    assert _neigh(nbr, ip, "eth0").get("lladdr") == MAC_B, ip
                sender_guard.track(net, "c-new")
                assert wait_dead(sender_guard[0], 2.0)
            else:
                time.sleep(1.0)
        for ip in ("10.77.0.2", "fd00:77::2"):
            entry = _neigh(nbr, ip, "eth0")
            assert entry is not None and entry.get("lladdr") == (MAC_B if count else MAC_A), (ip, entry)
        assert [f for f in sent.frames if _concerns(f, ("10.77.0.2", "fd00:77::2"))] == []
        assert plugin.run("DEL", conf(count, MAC_B), container_id="c-new", netns=pod_b.path).status == 0


@pytest.mark.parametrize("count", [3, 0])
def test_ptp_host_end_learns_the_new_mac(inproc, net, count, sender_guard):
    """In ptp mode there is no shared L2: the pod's only neighbour is the host end.

    Its cache starts empty on every ADD (DEL deletes the host veth with its
    entries), so there is no stale entry to fix; by default Linux only updates
    entries from unsolicited ARP/NA and never creates them. With the host set
    to accept them (arp_accept, accept_untracked_na), the entry for the pod IP
    on the new host veth holds the new pod's MAC right after re-ADD, before
    any traffic; with count 0 there is none.
    """
    host = inproc.host
    for key in ("net/ipv4/conf/all/arp_accept", "net/ipv4/conf/default/arp_accept"):
        host.run("sh", "-c", f"echo 1 > /proc/sys/{key}")
    for key in ("net/ipv6/conf/all/accept_untracked_na", "net/ipv6/conf/default/accept_untracked_na"):
        host.run("sh", "-c", f"echo 1 > /proc/sys/{key}")
    with support.netns("nsvp-") as pod_a, support.netns("nsvp-") as pod_b:
        conf_a = net.conf(ipam=_one_address_ipam(net), advertise={"count": 1}, runtimeConfig={"mac": MAC_A})
        add_a = inproc.run("ADD", conf_a, container_id="c-old", netns=pod_a.path)
        assert add_a.status == 0, add_a.stdout
        assert inproc.run("DEL", conf_a, container_id="c-old", netns=pod_a.path).status == 0
        conf_b = net.conf(
            ipam=_one_address_ipam(net), advertise={"count": count, "intervalMs": 100}, runtimeConfig={"mac": MAC_B}
        )
        add_b = inproc.run("ADD", conf_b, container_id="c-new", netns=pod_b.path)
        assert add_b.status == 0, add_b.stdout
        if count:
            sender_guard.track(net, "c-new")
        host_if = add_b.json["interfaces"][0]["name"]
        time.sleep(0.3)
        for ip in ("10.77.0.2", "fd00:77::2"):
            entry = _neigh(host, ip, host_if)
            if count:
                assert entry is not None and entry.get("lladdr") == MAC_B, (ip, entry)
            else:
                assert entry is None or entry.get("lladdr") != MAC_B, (ip, entry)
        assert inproc.run("DEL", conf_b, container_id="c-new", netns=pod_b.path).status == 0


# ------------------------------------------------------------ conf example
def test_conf_example_advertises(plugin, pod_ns, net, tmp_path, sender_guard):
    """conf-examples/dualstack.conflist (announcements tuned), as a runtime would pass its plugin entry."""
    conf = net.from_example("dualstack.conflist")
    interval = conf["advertise"]["intervalMs"] / 1000
    with Capture(plugin.host) as cap:
        add = plugin.run("ADD", conf, container_id="c-example", netns=pod_ns.path)
        assert add.status == 0, add.stdout
        sender_guard.track(net, "c-example")
        assert wait_dead(sender_guard[0], interval * conf["advertise"]["count"] + 1)
    mac = pod_mac(add)
    arps, nas = cap.announcements(mac)
    v4 = [ip["address"].split("/")[0] for ip in add.json["ips"] if ":" not in ip["address"]]
    v6 = [ip["address"].split("/")[0] for ip in add.json["ips"] if ":" in ip["address"]]
    assert len(v4) == 1 and len(v6) == 1
    assert len(arps) == len(nas) == conf["advertise"]["count"]
    for f in arps:
        assert_arp(f, mac, v4[0])
    for f in nas:
        assert_na(f, mac, v6[0])
    assert_spacing(arps, interval)
    assert plugin.run("DEL", conf, container_id="c-example", netns=pod_ns.path).status == 0


# ------------------------------------------------------- first-round failure
def test_first_round_failure_is_logged_not_fatal(inproc, pod_ns, net, tmp_path, monkeypatch, sender_guard):
    """The pod interface is taken down just before the announcement: the kernel
    refuses the frames (ENETDOWN), ADD still succeeds and says why in the log."""
    from nsveth import links, ptp

    settle = ptp.settle  # the step just before the announcement

    def settle_then_down(att):
        settle(att)
        links.set_flags(att.pod, att.pod_interface.index, 0, links.IFF_UP)

    monkeypatch.setattr(ptp, "settle", settle_then_down)
    log_file = tmp_path / "nsveth.log"
    conf = dual(net, advertise={"count": 2, "intervalMs": 100}, logFile=str(log_file))
    with Capture(inproc.host) as cap:
        add = inproc.run("ADD", conf, container_id="c-fail", netns=pod_ns.path)
        assert add.status == 0, add.stdout
        if net.record("c-fail")["advertiser"]:
            sender_guard.track(net, "c-fail")
            assert wait_dead(sender_guard[0], 1.0)
    logged = log_file.read_text()
    assert "unsolicited announcement failed: ARP for 10.77.0.2: Network is down" in logged, logged
    assert "NA for fd00:77::2: Network is down" in logged, logged
    assert cap.announcements(pod_mac(add)) == ([], [])
    assert inproc.run("DEL", conf, container_id="c-fail", netns=pod_ns.path).status == 0


def test_addresses_a_sysctl_removed_are_not_announced(inproc, pod_ns, net, sender_guard):
    """Announcements come after the sysctls: IPv6 disabled by one leaves no address to advertise."""
    conf = dual(net, advertise={"count": 2, "intervalMs": 100}, sysctl={"net.ipv6.conf.eth0.disable_ipv6": "1"})
    with Capture(inproc.host) as cap:
        add = inproc.run("ADD", conf, container_id="c-sysctl", netns=pod_ns.path)
        assert add.status == 0, add.stdout
        assert [ip["address"] for ip in add.json["ips"]] == ["10.77.0.2/24"]
        sender_guard.track(net, "c-sysctl")
        assert wait_dead(sender_guard[0], 1.0)
    arps, nas = cap.announcements(pod_mac(add))
    assert len(arps) == 2 and nas == []
    assert inproc.run("DEL", conf, container_id="c-sysctl", netns=pod_ns.path).status == 0


def test_every_address_is_announced(inproc, pod_ns, net):
    """Two IPv4 and two IPv6 addresses: one announcement each per round."""
    conf = net.conf(subnets=["10.77.0.0/24", "10.78.0.0/24", "fd00:77::/64", "fd00:78::/64"], advertise={"count": 1})
    with Capture(inproc.host) as cap:
        add = inproc.run("ADD", conf, container_id="c-many", netns=pod_ns.path)
        assert add.status == 0, add.stdout
        time.sleep(0.2)
    mac = pod_mac(add)
    arps, nas = cap.announcements(mac)
    assert sorted(socket.inet_ntoa(f.payload[14:18]) for f in arps) == ["10.77.0.2", "10.78.0.2"]
    assert sorted(str(ipaddress.IPv6Address(f.payload[8:24])) for f in nas) == ["fd00:77::2", "fd00:78::2"]
    for f in arps:
        assert_arp(f, mac, socket.inet_ntoa(f.payload[14:18]))
    for f in nas:
        assert_na(f, mac, str(ipaddress.IPv6Address(f.payload[8:24])))
    assert inproc.run("DEL", conf, container_id="c-many", netns=pod_ns.path).status == 0
