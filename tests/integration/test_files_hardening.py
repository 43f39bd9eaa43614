"""Files, netlink and the announcement sender, tried as an attacker would (issue 15, part B).

Every file nsveth touches is opened as a careful root daemon opens it: the
log file never through a symlink and never blocking on a FIFO, the sysctl
allowlist and the state records only when root-owned regular files within a
size cap, the runtime dir only below directories others cannot change. A
process in the pod netns cannot answer nsveth's netlink requests, and the
announcement sender runs unprivileged and is stopped only when it provably
is that attachment's sender. Also here: the one `info` line per command, and
config errors reaching the log file.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import threading
import time

import pytest
import support
from nsveth.errors import Code
from support import host_veths

CID = "c-files"
MARK = "777"  # a somaxconn value no test netns has: a forged record's "original"


# ------------------------------------------------------------------ helpers
def run_bounded(plugin: support.Plugin, command: str, conf: dict, timeout: float = 30.0, **kw: str) -> support.Reply:
    """The plugin, failing the test (instead of hanging it) when it does not return in time."""
    env = plugin.env(command, **kw)
    stdin = json.dumps(conf).encode()
    if plugin.mode != "inproc":
        try:
            return plugin.call(env, stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{command} hung for {timeout} s")
    box: dict = {}
    t = threading.Thread(target=lambda: box.update(reply=plugin._inproc(env, stdin)), daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        pytest.fail(f"{command} hung for {timeout} s")
    return box["reply"]


def stderr_of(plugin: support.Plugin, reply: support.Reply, capfd) -> str:
    return reply.stderr if plugin.mode != "inproc" else capfd.readouterr().err


def forged_record(net: support.Network, pod_ns: support.Netns, cid: str = CID, **extra) -> dict:
    """A record as ADD writes it, plus a sysctl "original" DEL would write into the pod netns."""
    with open(net.record_path(cid)) as f:
        record = json.load(f)
    record["sysctlOriginals"] = [{"path": ["net", "core", "somaxconn"], "value": MARK}]
    record.update(extra)
    return record


def assert_cleaned_by_name(plugin: support.Plugin, pod_ns: support.Netns, net: support.Network, cid: str = CID) -> None:
    assert host_veths(plugin.host) == []
    assert net.leases() == []
    assert not os.path.lexists(net.record_path(cid))
    assert pod_ns.sysctl("net/core/somaxconn") != MARK, "DEL acted on an untrusted record"


# ------------------------------------------------------------------ logFile
def test_log_file_symlink_is_not_followed(plugin, pod_ns, net, tmp_path, capfd):
    target = tmp_path / "victim"
    target.write_text("precious\n")
    link = tmp_path / "nsveth.log"
    link.symlink_to(target)
    conf = net.conf(logFile=str(link), logLevel="info")
    capfd.readouterr()
    add = run_bounded(plugin, "ADD", conf, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    err = stderr_of(plugin, add, capfd)
    assert err.count(f"not logging to {link}") == 1 and "symbolic link" in err, err
    assert target.read_text() == "precious\n", "root appended to the file a symlink pointed at"
    assert add.json["cniVersion"] == "1.0.0"  # stdout is the result alone
    assert plugin.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0


@pytest.mark.parametrize("reader", [False, True], ids=["no-reader", "reader"])
def test_fifo_log_file_never_hangs(plugin, pod_ns, net, tmp_path, reader, capfd):
    fifo = tmp_path / "nsveth.log"
    os.mkfifo(fifo)
    # With a reader the open succeeds; without one it would block forever (the old code did).
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK) if reader else None
    conf = net.conf(logFile=str(fifo), logLevel="debug")
    try:
        capfd.readouterr()
        add = run_bounded(plugin, "ADD", conf, timeout=20, container_id=CID, netns=pod_ns.path)
        assert add.status == 0, add.stdout
        err = stderr_of(plugin, add, capfd)
        assert err.count(f"not logging to {fifo}") == 1, err
        assert plugin.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0
        if reader:
            assert os.read(rfd, 100) == b""  # nothing was written into the FIFO (and no writer holds it)
    finally:
        # Unblock a writer stuck in open() (old code), so no thread stays behind.
        fd = rfd if rfd is not None else os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        time.sleep(0.1)
        os.close(fd)


def test_log_file_in_a_missing_directory_gives_one_warning(plugin, pod_ns, net, tmp_path, capfd):
    missing = tmp_path / "nope" / "nsveth.log"
    conf = net.conf(logFile=str(missing))
    capfd.readouterr()
    add = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    err = stderr_of(plugin, add, capfd)
    warnings = [line for line in err.splitlines() if str(missing) in line]
    assert len(warnings) == 1 and "warning" in warnings[0] and "No such file" in warnings[0], err
    assert not missing.parent.exists()
    assert plugin.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0


def test_log_file_is_created_private(exe, pod_ns, net, tmp_path):
    log = tmp_path / "nsveth.log"
    conf = net.conf(logFile=str(log), logLevel="info")
    assert exe.run("ADD", conf, container_id=CID, netns=pod_ns.path).status == 0
    assert exe.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0
    assert os.stat(log).st_mode & 0o777 == 0o600


# ------------------------------------------------------------- info lines
def test_one_info_line_per_command_says_what_happened(plugin, pod_ns, net, tmp_path):
    from nsveth.attachment import host_ifname

    log = tmp_path / "nsveth.log"
    conf = net.conf(logFile=str(log), logLevel="info")
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0"
    add = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path, CNI_ARGS=args)
    assert add.status == 0, add.stdout
    json.loads(add.stdout)  # stdout stays the result alone
    prev = support.with_prev(conf, add.json)
    assert plugin.run("CHECK", prev, container_id=CID, netns=pod_ns.path, CNI_ARGS=args).status == 0
    assert plugin.run("DEL", prev, container_id=CID, netns=pod_ns.path, CNI_ARGS=args).status == 0
    lines = [line for line in log.read_text().splitlines() if " result=" in line]
    assert [line.split(" INFO ")[1].split()[0] for line in lines] == ["ADD", "CHECK", "DEL"], lines
    for line in lines:
        for part in ("result=ok", "pod=shop/web-0", f"containerID={CID}", f"netns={pod_ns.path}", "ifname=eth0",
                     f"hostVeth={host_ifname(CID, 'eth0')}", "addresses=10.77.0.2/24", f"network={net.name}"):
            assert part in line.split(), (part, line)
        assert " INFO " in line and "duration=" in line and line.endswith("ms"), line


def test_failures_are_logged_with_their_code(inproc, pod_ns, net, tmp_path):
    log = tmp_path / "nsveth.log"
    conf = net.conf(logFile=str(log), logLevel="info")
    rep = inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path + "-gone")
    assert rep.code == Code.UNKNOWN_CONTAINER
    text = log.read_text()
    assert " ERROR " in text and "does not exist (code 3)" in text, text
    assert "result=\"error 3\"" in text, text


@pytest.mark.parametrize("level, summary", [(None, False), ("info", True)])
def test_config_errors_reach_the_log_file(plugin, pod_ns, net, tmp_path, level, summary):
    """Before the config is valid its logFile is not known for sure: it is taken from the raw JSON."""
    log = tmp_path / "nsveth.log"
    conf = net.conf(logFile=str(log), ipMasqq=True, **({"logLevel": level} if level else {}))
    rep = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert rep.code == Code.UNSUPPORTED_FIELD, rep.stdout
    text = log.read_text()
    assert " ERROR " in text and "ipMasqq" in text and f"ADD {CID}/eth0" in text, text
    assert ("result=\"error 2\"" in text) is summary, text


def test_hostile_values_cannot_forge_log_lines(inproc, pod_ns, net, tmp_path):
    """A pod name from CNI_ARGS and a field name from the config, both with a newline:
    each record stays one line."""
    log = tmp_path / "nsveth.log"
    conf = net.conf(logFile=str(log), logLevel="info", **{"ipMasq\nFAKE ERROR": True})
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=a\nFAKE result=ok;K8S_POD_NAME=b c"
    assert inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path, CNI_ARGS=args).code == Code.UNSUPPORTED_FIELD
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and not any(line.startswith("FAKE") for line in lines), lines
    assert 'pod="a\\nFAKE result=ok/b c"' in lines[1], lines


# -------------------------------------------------------------- allowlist
@pytest.mark.parametrize("problem", ["not-root-owned", "group-writable", "symlink", "fifo", "too-large"])
def test_untrusted_allowlist_is_code_7(plugin, pod_ns, net, tmp_path, problem):
    good = tmp_path / "real.conf"
    good.write_text("net.core.somaxconn\n")
    path = tmp_path / "allow.conf"
    if problem == "symlink":
        path.symlink_to(good)
    elif problem == "fifo":
        os.mkfifo(path)
    else:
        path.write_text("net.core.somaxconn\n" + ("#" * 70000 + "\n" if problem == "too-large" else ""))
        if problem == "not-root-owned":
            os.chown(path, 65534, 65534)
        if problem == "group-writable":
            os.chmod(path, 0o664)
    conf = net.conf(sysctlAllowlist=str(path), sysctl={"net.core.somaxconn": "1003"})
    rep = run_bounded(plugin, "ADD", conf, container_id=CID, netns=pod_ns.path)
    assert rep.code == Code.INVALID_CONFIG, rep.stdout
    msg = rep.json["msg"]
    expected = {"not-root-owned": "owned by uid 65534", "group-writable": "writable by group or others",
                "symlink": "symbolic link", "fifo": "FIFO", "too-large": "larger than"}[problem]
    assert str(path) in msg and expected in msg, msg
    assert host_veths(plugin.host) == [] and net.leases() == [] and net.state_files() == []
    assert pod_ns.sysctl("net/core/somaxconn") != "1003"


# ------------------------------------------------------------ state records
@pytest.mark.parametrize(
    "problem", ["nested", "nested-within-cap", "too-large", "sparse-300MB", "symlink", "not-root-owned", "group-writable", "fifo"]
)
def test_unusable_record_del_cleans_up_by_name(plugin, pod_ns, net, tmp_path, problem, capfd):
    conf = net.conf()
    add = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    path = net.record_path(CID)
    forged = forged_record(net, pod_ns)
    os.unlink(path)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(forged))
    if problem == "nested":
        with open(path, "w") as f:
            f.write("[" * 100000 + "]" * 100000)  # over the cap: never read
    elif problem == "nested-within-cap":
        with open(path, "w") as f:
            f.write("[" * 30000 + "]" * 30000)  # 60 KB: read, and too deep to parse (RecursionError)
    elif problem == "too-large":
        with open(path, "w") as f:
            f.write(json.dumps(forged) + " " * 70000)  # valid JSON, over 64 KiB
    elif problem == "sparse-300MB":
        with open(path, "w") as f:  # 300 MB long, nothing on disk (the old code read it all into memory)
            f.write(json.dumps(forged))
            f.truncate(300 << 20)
    elif problem == "symlink":
        os.symlink(elsewhere, path)
    elif problem == "fifo":
        os.mkfifo(path)
    else:
        with open(path, "w") as f:
            f.write(json.dumps(forged))
        if problem == "not-root-owned":
            os.chown(path, 65534, 65534)
        else:
            os.chmod(path, 0o620)
    capfd.readouterr()
    rep = run_bounded(plugin, "DEL", conf, container_id=CID, netns=pod_ns.path)
    assert rep.status == 0, (rep.stdout, stderr_of(plugin, rep, capfd)[-2000:])
    err = stderr_of(plugin, rep, capfd)
    assert_cleaned_by_name(plugin, pod_ns, net)
    assert f"state record {path} is unusable" in err and "deleting by name" in err, err
    assert json.loads(elsewhere.read_text()) == forged, "the symlink's target was touched"


def test_unusable_record_makes_add_fail_then_del_recovers(inproc, pod_ns, net):
    conf = net.conf()
    assert inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path).status == 0
    path = net.record_path(CID)
    os.chown(path, 65534, 65534)
    again = inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert again.code in (Code.INVALID_ENV, Code.IO_FAILURE), again.stdout  # eth0 exists (4) or the record is unusable (5)
    assert inproc.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0
    assert not os.path.lexists(path) and host_veths(inproc.host) == []
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("{" * 5000)
    rep = inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert rep.code == Code.IO_FAILURE and path in rep.json["msg"], rep.stdout
    assert host_veths(inproc.host) == [] and net.leases() == []
    assert inproc.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0
    assert not os.path.lexists(path)


def test_gc_releases_an_attachment_with_an_unusable_record_by_name(inproc, pod_ns, net):
    conf = net.conf("1.1.0")
    assert inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path).status == 0
    with open(net.record_path(CID), "w") as f:
        f.write("[" * 100000)
    gc = inproc.run("GC", {**conf, "cni.dev/valid-attachments": []})
    assert gc.status == 0, gc.stdout
    assert host_veths(inproc.host) == [] and net.leases() == [] and net.state_files() == []


# ------------------------------------------------------------- runtimeDir
@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_runtime_dir_below_a_directory_others_can_change_is_refused(plugin, pod_ns, net, tmp_path, mode):
    parent = tmp_path / "shared"
    parent.mkdir()
    os.chmod(parent, mode)
    conf = net.conf(runtimeDir=str(parent / "nsveth"))
    rep = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert rep.code == Code.IO_FAILURE, rep.stdout
    assert str(parent) in rep.json["msg"] and "writable by group or others" in rep.json["msg"], rep.json["msg"]
    assert host_veths(plugin.host) == [] and net.leases() == []
    assert not (parent / "nsveth" / net.name).exists()
    # DEL still succeeds (by name), as with any unusable runtime dir.
    assert plugin.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0


def test_runtime_dir_parent_not_owned_by_root_is_refused(inproc, pod_ns, net, tmp_path):
    parent = tmp_path / "theirs"
    parent.mkdir(mode=0o755)
    os.chown(parent, 65534, 65534)
    rep = inproc.run("ADD", net.conf(runtimeDir=str(parent / "nsveth")), container_id=CID, netns=pod_ns.path)
    assert rep.code == Code.IO_FAILURE and str(parent) in rep.json["msg"] and "uid 65534" in rep.json["msg"], rep.stdout


def test_runtime_dir_below_a_sticky_directory_is_fine(inproc, pod_ns, net, tmp_path):
    """/tmp-like: others may write there, but only an entry's owner can rename it."""
    parent = tmp_path / "sticky"
    parent.mkdir()
    os.chmod(parent, 0o1777)
    conf = net.conf(runtimeDir=str(parent / "a" / "nsveth"))
    assert inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path).status == 0
    assert os.stat(parent / "a").st_mode & 0o777 == 0o755  # a missing parent is made 0755, whatever the umask
    assert inproc.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0


# ------------------------------------------------------------ netns path
def test_netns_path_swapped_after_its_check_opens_the_file_checked(pod_ns, tmp_path, monkeypatch):
    """CNI_NETNS names a netns when it is checked and a FIFO right after: the FIFO is never opened
    (a FIFO blocks, a device may act on open); what was checked is what is opened."""
    from nsveth import netns

    path = tmp_path / "ns"
    path.symlink_to(pod_ns.path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    real_stat, real_fstat = os.stat, os.fstat

    swapped = []

    def swap_after(real):
        def look(*args, **kwargs):
            out = real(*args, **kwargs)
            if not swapped:
                swapped.append(True)
                os.rename(fifo, path)  # atomically over the symlink, between the check and the open
            return out

        return look

    monkeypatch.setattr(os, "stat", swap_after(real_stat))
    monkeypatch.setattr(os, "fstat", swap_after(real_fstat))
    fd = netns.open_path(str(path))
    monkeypatch.undo()
    try:
        assert swapped and path.is_fifo(), "the swap did not happen"
        assert netns.identity(fd)["ino"] == os.stat(pod_ns.path).st_ino
    finally:
        os.close(fd)


# ---------------------------------------------------------------- netlink
NLMSG_ERROR, NLMSG_DONE = 2, 3


def _forge(sock_port: int, seq: int, kind: int) -> bytes:
    if kind == NLMSG_DONE:
        return struct.pack("=IHHIIi", 20, NLMSG_DONE, 2, seq, 0, 0)
    # NLMSG_ERROR, -EPERM, with a copy of a (fake) request header
    return struct.pack("=IHHIIi", 36, NLMSG_ERROR, 0, seq, 0, -1) + struct.pack("=IHHII", 16, 18, 5, seq, sock_port)


def test_forged_netlink_replies_from_the_pod_are_ignored(pod_ns):
    """A process in the pod netns unicasts NLMSG_DONE / NLMSG_ERROR to nsveth's port id,
    for the sequence numbers nsveth is about to use: the answers stay the kernel's."""
    from nsveth import links, netlink, netns

    fd = netns.open_path(pod_ns.path)
    try:
        with netns.entered(fd):
            sock = netlink.Socket()
            forger = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    finally:
        os.close(fd)
    with sock, forger:
        port = sock._sock.getsockname()[0]
        refused = 0
        for ahead in range(1, 7):
            for kind in (NLMSG_DONE, NLMSG_ERROR):
                try:
                    forger.sendto(_forge(port, sock._seq + ahead, kind), (port, 0))
                except ConnectionRefusedError:
                    refused += 1  # the kernel already refuses unicasts to a connected socket
        assert [link.name for link in links.dump(sock)] == ["lo"]
        lo = links.get(sock, name="lo")
        assert lo is not None and lo.name == "lo"
        assert links.get(sock, index=lo.index).name == "lo"
        assert refused == 12


# ------------------------------------------------------------------ sender
def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _sender(net: support.Network, cid: str) -> int:
    with open(net.record_path(cid)) as f:
        adv = json.load(f)["advertiser"]
    assert adv and adv["pid"] > 1, adv
    return adv["pid"]


def test_sender_runs_unprivileged(plugin, pod_ns, net):
    conf = net.conf(advertise={"count": 3, "intervalMs": 1000})
    add = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    pid = _sender(net, CID)
    try:
        st = _status(pid)
        assert st["Uid"].split() == ["65534"] * 4 and st["Gid"].split() == ["65534"] * 4, st
        assert st["Groups"].strip() == ""
        assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0 and int(st["CapAmb"], 16) == 0, st
        assert st["NoNewPrivs"].strip() == "1"
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        from nsveth import senders

        assert senders.lock_holder(net.record_path(CID)[: -len(".json")] + ".sender") == pid
    finally:
        assert plugin.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0
    assert not os.path.exists(f"/proc/{pid}/status") or _status(pid)["State"].startswith("Z")


def test_sender_has_a_hard_deadline(inproc, pod_ns, net, monkeypatch):
    """A sender stuck in a call (here: re-reading its link takes a minute) dies a few
    seconds after its last round was due, whatever it is doing."""
    from nsveth import advertise

    def stuck(self):
        time.sleep(60)
        return True

    monkeypatch.setattr(advertise.Announcer, "link_unchanged", stuck)  # the sender is a fork of this process
    conf = net.conf(advertise={"count": 2, "intervalMs": 100})
    assert inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path).status == 0
    pid = _sender(net, CID)
    started = time.monotonic()
    try:
        while os.path.exists(f"/proc/{pid}") and not _status(pid)["State"].startswith("Z"):
            if time.monotonic() - started > 6:
                pytest.fail("the sender outlived its deadline")
            time.sleep(0.05)
    finally:
        assert inproc.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0  # stops it if it still runs


@pytest.mark.parametrize("command", ["DEL", "GC"])
def test_del_never_kills_a_process_the_record_merely_names(plugin, pod_ns, net, command):
    """The record names a live process with its exact start time (anyone can read it), but that
    process is not this attachment's sender: DEL and GC leave it alone."""
    from nsveth import advertise

    conf = net.conf("1.1.0", advertise={"count": 1})  # no sender of its own
    assert plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path).status == 0
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        record = forged_record(net, pod_ns, advertiser={"pid": bystander.pid, "start": advertise.start_time(bystander.pid)})
        record["sysctlOriginals"] = []
        with open(net.record_path(CID), "w") as f:
            json.dump(record, f)
        if command == "DEL":
            rep = plugin.run("DEL", conf, container_id=CID, netns=pod_ns.path)
        else:
            rep = plugin.run("GC", {**conf, "cni.dev/valid-attachments": []})
        assert rep.status == 0, rep.stdout
        assert host_veths(plugin.host) == [] and net.state_files() == []
        time.sleep(0.1)
        assert bystander.poll() is None, "DEL killed a process that was not its sender"
    finally:
        bystander.kill()
        bystander.wait()
