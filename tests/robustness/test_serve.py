"""The warm server under kills, restarts, upgrades, strangers, load and garbage.

Each test that kills or replaces a server starts its own (support.Server on
a private socket) and removes it, pass or fail. A slow fake IPAM plugin holds
an ADD in the middle (after its state record, before any lease) and records
the pid of the process that runs the request (its parent), so a test can
kill the client or the server at a known point and see what dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import pytest
import support
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nsveth import client
from nsveth.errors import Code

SLOW_IPAM = """#!/bin/sh
if [ "$CNI_COMMAND" = ADD ]; then
  echo $PPID > "$SLOW_IPAM_DIR/request.pid"
  echo $$ > "$SLOW_IPAM_DIR/ipam.pid"
  exec sleep 60
fi
exit 0
"""


@pytest.fixture
def server():
    srv = support.Server()
    try:
        yield srv.start()
    finally:
        srv.remove()


@pytest.fixture
def slow_ipam(tmp_path):
    d = tmp_path / "slow"
    d.mkdir()
    script = d / "slow-ipam"
    script.write_text(SLOW_IPAM)
    script.chmod(0o755)
    try:
        yield str(d)
    finally:
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int((d / "ipam.pid").read_text()), signal.SIGKILL)


def alive(pid: int) -> bool:
    from nsveth import senders

    return senders.start_time(pid) is not None  # None for a zombie, and for a pid read while it is reaped


def wait_for(cond, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def start_slow_add(host: support.Netns, pod: support.Netns, net: support.Network, srv: support.Server, slow: str):
    """A served ADD held inside its IPAM call; (client process, request pid, conf, env)."""
    conf = net.conf(ipam={"type": "slow-ipam"})
    env = support.Plugin(host, "exe").env(
        "ADD", container_id="ctr-slow", netns=pod.path, CNI_PATH=f"{slow}:{support.CNI_PATH}", SLOW_IPAM_DIR=slow, NSVETH_SOCKET=srv.socket
    )
    proc = subprocess.Popen(
        ["ip", "netns", "exec", host.name, support.EXECUTABLE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    import json

    proc.stdin.write(json.dumps(conf).encode())
    proc.stdin.close()
    pidfile = os.path.join(slow, "request.pid")
    wait_for(lambda: os.path.exists(pidfile) and os.path.getsize(pidfile) > 0, what="the ADD to reach IPAM")
    request_pid = int(open(pidfile).read())
    assert request_pid != proc.pid  # the request runs in the server's child, not in the client
    return proc, request_pid, conf, env


def finish(proc: subprocess.Popen) -> bytes:
    """Wait for the client; its stdout."""
    proc.wait(timeout=20)
    out = proc.stdout.read()
    proc.stdout.close()
    proc.stderr.close()
    return out


def del_cleans_up(host: support.Netns, pod: support.Netns, net: support.Network, conf: dict, env: dict, socket_path: str) -> None:
    reply = support.Plugin(host, "exe").call({**env, "CNI_COMMAND": "DEL", "NSVETH_SOCKET": socket_path}, conf)
    assert reply.status == 0, reply.stdout
    assert net.state_files() == [] and support.host_veths(host) == [] and "eth0" not in pod.links()


def test_client_killed_mid_add_kills_the_request_at_once(host_ns, pod_ns, net, server, slow_ipam):
    proc, request_pid, conf, env = start_slow_add(host_ns, pod_ns, net, server, slow_ipam)
    assert alive(request_pid) and net.state_files()  # the ADD is half done: its record exists
    proc.kill()  # what a runtime does on timeout
    proc.wait()
    t0 = time.monotonic()
    wait_for(lambda: not alive(request_pid), timeout=2.0, what="the request's process to die")
    assert time.monotonic() - t0 < 1.0
    finish(proc)  # (its stdout reaches EOF only once the request's copy is gone)
    wait_for(lambda: "killed: the client hung up" in server.log(), what="the server's log line")
    assert server.proc.poll() is None  # the server serves on
    del_cleans_up(host_ns, pod_ns, net, conf, env, server.socket)
    assert "DEL ctr-slow/eth0 status 0" in server.log()


def test_server_killed_mid_add_kills_the_request_and_the_client_says_try_again(host_ns, pod_ns, net, server, slow_ipam):
    proc, request_pid, conf, env = start_slow_add(host_ns, pod_ns, net, server, slow_ipam)
    server.proc.kill()
    out = finish(proc)
    wait_for(lambda: not alive(request_pid), timeout=2.0, what="the request's process to die with the server")
    reply = support.Reply(proc.returncode, out)
    assert reply.status == 1 and reply.code == Code.TRY_AGAIN, out  # accepted, so never re-run in-process
    assert "server ended before the request reported" in reply.json["msg"]
    # The socket file is left behind: connecting is refused, so DEL runs in-process.
    assert os.path.exists(server.socket)
    del_cleans_up(host_ns, pod_ns, net, conf, env, server.socket)


def test_server_restarted_between_add_and_del(host_ns, pod_ns, net, server):
    plugin = support.Plugin(host_ns, "served", server)
    add = plugin.run("ADD", net.conf(), container_id="ctr-restart", netns=pod_ns.path)
    assert add.status == 0, add.stdout
    assert server.stop() == 0
    assert not os.path.exists(server.socket)  # a stopped server removes its socket
    server.start()
    dele = plugin.run("DEL", support.with_prev(net.conf(), add.json), container_id="ctr-restart", netns=pod_ns.path)
    assert dele.status == 0, dele.stdout
    assert net.state_files() == [] and net.leases() == [] and support.host_veths(host_ns) == []
    assert server.log().count("serving ") == 2


def test_a_client_of_another_build_runs_in_process_and_the_server_retires(host_ns, pod_ns, net, tmp_path):
    """The server is an older build (another build_id): the new client runs in-process and the old server ends."""
    old = tmp_path / "old"
    shutil.copytree(os.path.dirname(support.EXECUTABLE), old, symlinks=True)
    build_id = old / "_internal" / "nsveth" / "build_id"
    build_id.write_text("an older build\n")
    srv = support.Server(exe=str(old / "nsveth"))
    try:
        srv.start()
        plugin = support.Plugin(host_ns, "exe")
        env = plugin.env("ADD", container_id="ctr-stale", netns=pod_ns.path, NSVETH_SOCKET=srv.socket)
        add = plugin.call(env, net.conf())
        assert add.status == 0, add.stdout
        assert net.state_files()  # done, in-process
        srv.proc.wait(timeout=20)  # it retires
        assert srv.proc.returncode == 0
        assert "another build" in srv.log() and "ADD" not in srv.log()
        assert not os.path.exists(srv.socket)
        dele = plugin.call({**env, "CNI_COMMAND": "DEL"}, support.with_prev(net.conf(), add.json))
        assert dele.status == 0 and net.state_files() == []
    finally:
        srv.remove()


def _as_nobody(fn) -> str:
    """Run fn() in a forked child with uid/gid 65534; its returned string."""
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(rd)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(wr, str(fn()).encode())
        finally:
            os._exit(0)
    os.close(wr)
    with os.fdopen(rd, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


def test_non_root_clients_are_not_served(server):
    env = {"CNI_COMMAND": "VERSION", "NSVETH_SOCKET": server.socket}

    def attempt() -> str:
        status = client.handoff(env)
        return f"{status} {client.fallback_reason}"

    # The socket is root's (0600): connecting is refused by the kernel.
    out = _as_nobody(attempt)
    assert out.startswith("None ") and "Permission denied" in out, out
    # Even where the file lets them connect, the server refuses by SO_PEERCRED and logs it.
    os.chmod(server.dir, 0o755)
    os.chmod(server.socket, 0o666)
    out = _as_nobody(attempt)
    assert out.startswith("None ") and "refused this client" in out, out
    assert "is not root" in server.log()
    still_serves(server)


def test_root_without_the_servers_privileges_is_not_served(server):
    """uid 0 is not privilege: a root client with no capabilities (an empty bounding set,
    as in a restricted container) or in its own user namespace runs in-process, with its
    own privileges, and the server logs why."""
    env = {**os.environ, "CNI_COMMAND": "VERSION", "NSVETH_SOCKET": server.socket}
    for prefix, why in (
        (["setpriv", "--bounding-set=-all", "--inh-caps=-all"], "lacks capabilities the server has"),
        (["unshare", "--user", "--map-root-user"], "in another user namespace"),
    ):
        served = server.served_count()
        proc = subprocess.run([*prefix, support.EXECUTABLE], env=env, capture_output=True, timeout=60)
        assert proc.returncode == 0 and json.loads(proc.stdout)["supportedVersions"], proc
        assert server.served_count() == served
        assert why in server.log(), server.log()[-2000:]
    still_serves(server)


def test_the_client_hands_nothing_to_a_server_that_is_not_roots():
    """A socket at the path answered by another user gets nothing: the client runs in-process."""
    where = tempfile.mkdtemp(prefix="nsvfake-")  # pytest's tmp_path is root-only: nobody could not bind there
    os.chmod(where, 0o777)
    path = os.path.join(where, "nsveth.sock")
    fake = subprocess.Popen(
        [sys.executable, "-c", FAKE_SERVER, path, os.path.join(support.REPO, "plugin")],
        preexec_fn=lambda: (os.setgroups([]), os.setgid(65534), os.setuid(65534)),
        stdout=subprocess.PIPE,
    )
    try:
        assert fake.stdout is not None and fake.stdout.readline() == b"listening\n"
        status = client.handoff({"CNI_COMMAND": "VERSION", "NSVETH_SOCKET": path})
        assert status is None and "is not root's (uid 65534)" in client.fallback_reason, client.fallback_reason
    finally:
        fake.kill()
        fake.wait()
        shutil.rmtree(where)


# Accepts one connection and greets it as an nsveth server of the same build would.
FAKE_SERVER = """
import socket, sys
sys.path.insert(0, sys.argv[2])
from nsveth import client
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen()
print("listening", flush=True)
c, _ = s.accept()
c.sendall(client.pack(b"H", client.PROTOCOL + b"\\0" + client.build_id()))
c.recv(1)
"""


def test_fifty_parallel_adds_and_dels_through_one_server(net, server):
    n = 50
    with support.netns("nsvh-") as host:
        with support.netns_many(n, "nsvp-") as pods:
            plugin = support.Plugin(host, "served", server)
            conf = net.conf(subnets=["10.61.0.0/16"])
            adds = plugin.run_each("ADD", conf, pods, "ctr-")
            assert len({r.json["ips"][0]["address"] for r in adds}) == n
            plugin.run_each("DEL", [support.with_prev(conf, a.json) for a in adds], pods, "ctr-")
            assert support.host_veths(host) == [] and net.leases() == [] and net.state_files() == []
            assert server.log().count(" status 0 ") == 2 * n


# ------------------------------------------------------------------ fuzzing
def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def still_serves(srv: support.Server) -> None:
    """A well-formed hello arrives: the server survived and serves on."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(srv.socket)
        kind, payload = client.recv_message(s)
        assert kind == b"H" and payload.startswith(client.PROTOCOL + b"\0")
    finally:
        s.close()


messages = st.one_of(
    st.binary(max_size=64),  # garbage
    st.builds(
        lambda k, n, body: struct.pack("!cI", k, n) + body,
        st.sampled_from([b"R", b"A", b"X", b"\0"]),
        st.integers(0, 2**32 - 1),
        st.binary(max_size=32),
    ),
    st.builds(lambda body: client.pack(b"R", body), st.binary(max_size=64)),  # well framed, any payload
    st.builds(lambda body, cut: client.pack(b"R", body)[:cut], st.binary(min_size=8, max_size=64), st.integers(0, 12)),  # truncated
    st.builds(
        lambda n: client.pack(b"R", b"\0\0\0\x12" + b"A" * n), st.sampled_from([client.MAX_PAYLOAD + 1, 2 * client.MAX_PAYLOAD])
    ),  # oversized
)


@settings(max_examples=int(os.environ.get("NSVETH_FUZZ_SERVE_EXAMPLES", "150")), deadline=None, suppress_health_check=list(HealthCheck))
@given(data=messages, nfds=st.integers(0, 9), split=st.booleans(), read_hello=st.booleans())
def test_socket_fuzz_closes_only_that_connection(fuzz_server, data, nfds, split, read_hello):
    """Garbage, truncated or oversized messages, wrong descriptor counts, hangups mid-message:
    that connection closes, the server serves on, and it holds no descriptor more than before.
    (A well-formed "S", another build's notice, is left out: it retires the server by design.)"""
    srv, baseline = fuzz_server
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(nfds)]
    try:
        s.connect(srv.socket)
        if read_hello:
            assert client.recv_message(s)[0] == b"H"
        head, tail = (data[:3], data[3:]) if split else (data, b"")
        with contextlib.suppress(OSError):
            s.sendmsg([head], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{nfds}i", *fds))] if fds else [])
            if tail:
                s.sendall(tail)
    finally:
        s.close()  # hang up, mid-message or not
        for fd in fds:
            os.close(fd)
    still_serves(srv)
    wait_for(lambda: open_fds(srv.proc.pid) == baseline, timeout=5, what=f"the server's descriptors back to {baseline}")
    assert srv.proc.poll() is None


@pytest.fixture(scope="module")
def fuzz_server():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    srv = support.Server()
    try:
        srv.start()
        still_serves(srv)
        time.sleep(0.2)
        yield srv, open_fds(srv.proc.pid)
    finally:
        srv.remove()


def test_the_announcement_sender_outlives_the_server(host_ns, pod_ns, net, server):
    """The sender a served ADD leaves (its own process, which goes on after the answer in a session
    of its own, with PR_SET_PDEATHSIG cleared) is not killed with the server. It is no longer
    the server's request process: the server's answer came before its rounds end, and the
    sender still holds its lock and runs unprivileged. DEL then stops it as always."""
    import json

    from nsveth import advertise, senders

    conf = net.conf(advertise={"count": 3, "intervalMs": 2000})
    plugin = support.Plugin(host_ns, "served", server)
    add = plugin.run("ADD", conf, container_id="ctr-sender", netns=pod_ns.path)
    assert add.status == 0, add.stdout
    (record,) = net.state_files()
    with open(os.path.join(net.runtime_dir, net.name, record)) as f:
        sender = json.load(f)["advertiser"]
    assert advertise.start_time(sender["pid"]) == sender["start"]
    lock = os.path.join(net.runtime_dir, net.name, "ctr-sender:eth0.sender")
    assert senders.lock_holder(lock) == sender["pid"]
    with open(f"/proc/{sender['pid']}/status") as f:
        ids = {line.split(":")[0]: line.split()[1:] for line in f if line.startswith(("Uid:", "Gid:", "CapEff:"))}
    assert ids["Uid"] == ["65534"] * 4 and ids["Gid"] == ["65534"] * 4 and int(ids["CapEff"][0], 16) == 0, ids
    assert os.getsid(sender["pid"]) == sender["pid"], "the sender must lead a session of its own"
    server.proc.kill()
    server.proc.wait()
    time.sleep(0.3)
    assert advertise.start_time(sender["pid"]) == sender["start"], "the sender died with the server"
    dele = support.Plugin(host_ns, "exe").call(
        plugin.env("DEL", container_id="ctr-sender", netns=pod_ns.path), support.with_prev(conf, add.json)
    )
    assert dele.status == 0 and advertise.start_time(sender["pid"]) is None


# ------------------------------------------------------------------ the spare
def server_children(srv: support.Server) -> list[int]:
    with open(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children") as f:
        return [int(p) for p in f.read().split()]


def the_spare(srv: support.Server) -> int:
    """The one idle child of a server with no request running: its spare request process."""
    children: list[int] = []

    def one() -> bool:
        children[:] = server_children(srv)
        return len(children) == 1

    wait_for(one, timeout=10, what="the server's spare request process")
    return children[0]


def test_the_next_request_runs_in_the_spare_and_a_new_spare_follows(host_ns, pod_ns, net, server, slow_ipam):
    """The server forks a request process ahead of its request; the spare holds no descriptor of
    the server's but its own control socket (else a connection it held would never see a hangup)."""
    spare = the_spare(server)
    fds = sorted(os.listdir(f"/proc/{spare}/fd"), key=int)
    assert fds[:3] == ["0", "1", "2"] and len(fds) == 4 and os.readlink(f"/proc/{spare}/fd/{fds[3]}").startswith("socket:")
    proc, request_pid, conf, env = start_slow_add(host_ns, pod_ns, net, server, slow_ipam)
    assert request_pid == spare
    os.kill(int(open(os.path.join(slow_ipam, "ipam.pid")).read()), signal.SIGKILL)  # IPAM fails: the ADD undoes itself
    finish(proc)
    wait_for(lambda: "ADD ctr-slow/eth0 status 1" in server.log(), what="the ADD's log line")
    assert the_spare(server) != spare
    assert net.state_files() == [] and support.host_veths(host_ns) == []


def test_a_spare_that_dies_is_replaced_and_requests_are_served_meanwhile(host_ns, net, server):
    plugin = support.Plugin(host_ns, "served", server)
    spare = the_spare(server)
    os.kill(spare, signal.SIGKILL)
    wait_for(lambda: f"spare request process {spare} ended before a request" in server.log(), what="the server's log line")
    assert server_children(server) == []  # reaped; no new one within a second of the loss
    assert plugin.run("VERSION", net.conf()).status == 0  # forked for it, as without a spare
    assert server.log().count(" status 0 ") == 1
    time.sleep(1.1)
    assert plugin.run("VERSION", net.conf()).status == 0
    assert the_spare(server) != spare


def test_a_stopping_server_ends_its_spare(server):
    spare = the_spare(server)
    assert server.stop() == 0
    assert not alive(spare)


def private_dirty_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith("Private_Dirty:"))


def test_spares_write_ahead_the_pages_the_first_add_wrote(host_ns, pod_ns, net, server):
    """The first ADD's process reports the pages it wrote (copies of the server's); every spare
    forked after that writes them while it waits, so a request no longer stops for each of those
    copy-on-write faults on its own path. A DEL does not teach, and the lesson is learnt once."""
    plugin = support.Plugin(host_ns, "served", server)
    conf = net.conf(advertise={"count": 1})  # no sender: each request's process ends at its answer
    before = private_dirty_kb(the_spare(server))
    assert plugin.run("DEL", conf, container_id="ctr-learn", netns=pod_ns.path).status == 0
    assert "learnt" not in server.log()
    for cid in ("ctr-learn", "ctr-learn-2"):
        add = plugin.run("ADD", conf, container_id=cid, netns=pod_ns.path)
        assert add.status == 0, add.stdout
        assert plugin.run("DEL", support.with_prev(conf, add.json), container_id=cid, netns=pod_ns.path).status == 0
    learnt = [line for line in server.log().splitlines() if " learnt " in line]
    assert len(learnt) == 1, server.log()
    pages = int(re.search(r" learnt (\d+) pages", learnt[0]).group(1))
    assert pages > 100, learnt
    spare = the_spare(server)
    written = pages * os.sysconf("SC_PAGE_SIZE") // 1024
    # A spare's own set-up writes some of the same pages (they are in `before` too).
    wait_for(lambda: private_dirty_kb(spare) >= 0.9 * written, timeout=5, what=f"the spare to write {written} kB ahead")
    assert private_dirty_kb(spare) - before >= written // 2
