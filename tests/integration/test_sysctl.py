"""Sysctls in the pod netns through the real kernel: apply, refuse, roll back, CHECK, DEL restore."""

from __future__ import annotations

import json
import os

import pytest
from nsveth.errors import Code
from support import SHIPPED_ALLOWLIST, host_veths, with_prev

CID = "ctr-sysctl"

# Values outside the pod that no rejected config may change: global keys read in the
# machine's own namespaces, and per-netns ones of the plugin's (throwaway) host netns.
GLOBAL_KEYS = [
    "kernel/core_pattern",
    "kernel/shmmax",
    "kernel/hostname",
    "vm/swappiness",
    "net/core/netdev_max_backlog",
    "net/core/rmem_max",
    "net/ipv4/tcp_mem",
]
HOST_NS_KEYS = ["net/core/somaxconn", "net/ipv4/tcp_keepalive_time", "net/ipv4/ip_local_port_range",
                "net/ipv4/conf/all/rp_filter", "net/ipv4/conf/default/rp_filter"]
POD_KEYS = ["net/core/somaxconn", "net/ipv4/tcp_keepalive_time", "net/ipv4/ip_local_port_range",
            "net/ipv4/conf/default/rp_filter", "net/ipv4/conf/all/rp_filter"]


def read_global(key: str) -> str:
    with open(f"/proc/sys/{key}") as f:
        return f.read()


def snapshot(plugin, pod_ns) -> dict:
    keys = " ".join(f"/proc/sys/{k}" for k in HOST_NS_KEYS)
    host = plugin.host.run("sh", "-c", f"for f in {keys}; do echo \"$f=$(cat $f)\"; done").stdout
    pod = pod_ns.run("sh", "-c", "for f in " + " ".join(f"/proc/sys/{k}" for k in POD_KEYS)
                     + "; do echo \"$f=$(cat $f)\"; done").stdout
    return {"global": {k: read_global(k) for k in GLOBAL_KEYS}, "host": host, "pod": pod}


def state_record(net) -> dict:
    (name,) = net.state_files()
    with open(os.path.join(net.runtime_dir, net.name, name)) as f:
        return json.load(f)


def shape(res: dict) -> dict:
    """A result with what differs between two containers blanked out."""
    out = json.loads(json.dumps(res))
    for i in out["interfaces"]:
        i["name"] = i["name"] if "sandbox" in i else "host"
        i["mac"] = "mac"
    for ip in out["ips"]:
        ip["address"] = ip["address"].split(".")[0]
    return out


def assert_nothing_left(plugin, pod_ns, net) -> None:
    assert host_veths(plugin.host) == []
    assert set(pod_ns.links()) == {"lo"}
    assert net.leases() == [] and net.state_files() == []


def assert_refused_up_front(plugin, pod_ns, net) -> None:
    """Nothing left, and IPAM was never called (host-local makes its network dir on first use)."""
    assert_nothing_left(plugin, pod_ns, net)
    assert not os.path.exists(os.path.join(net.ipam_dir, net.name))


# ------------------------------------------------------------------ apply
def test_add_applies_check_passes_del_restores(plugin, pod_ns, net):
    before = snapshot(plugin, pod_ns)
    original_somaxconn = pod_ns.sysctl("net/core/somaxconn")
    original_range = pod_ns.sysctl("net/ipv4/ip_local_port_range")
    plain = plugin.run("ADD", net.conf(), container_id="ctr-plain", netns=pod_ns.path)
    assert plain.status == 0, plain.stdout
    assert plugin.run("DEL", net.conf(), container_id="ctr-plain", netns=pod_ns.path).status == 0

    sysctls = {
        "net.core.somaxconn": "1000",
        "net/ipv4/tcp_keepalive_time": "321",
        "net.ipv4.ip_local_port_range": "20000 40000",
        "net.ipv4.conf.IFNAME.rp_filter": "2",
        "net/ipv4/conf/IFNAME/arp_notify": "1",
        "net.ipv4.tcp_syncookies": pod_ns.sysctl("net/ipv4/tcp_syncookies"),  # already so: not written
    }
    conf = net.conf(sysctl=sysctls)
    add = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    # The result is the one a config without sysctls gets.
    # (host-local hands out the next address, and the MACs and host name differ per container.)
    assert shape(add.json) == shape(plain.json)

    assert pod_ns.sysctl("net/core/somaxconn") == "1000"
    assert pod_ns.sysctl("net/ipv4/tcp_keepalive_time") == "321"
    assert pod_ns.sysctl("net/ipv4/ip_local_port_range").split() == ["20000", "40000"]
    assert pod_ns.sysctl("net/ipv4/conf/eth0/rp_filter") == "2"
    assert pod_ns.sysctl("net/ipv4/conf/eth0/arp_notify") == "1"
    after = snapshot(plugin, pod_ns)
    assert after["global"] == before["global"] and after["host"] == before["host"]

    # The state record holds what was replaced (an unchanged key is not recorded).
    recorded = {"/".join(o["path"]): o["value"] for o in state_record(net)["sysctlOriginals"]}
    assert set(recorded) == {"net/core/somaxconn", "net/ipv4/tcp_keepalive_time", "net/ipv4/ip_local_port_range",
                             "net/ipv4/conf/eth0/rp_filter", "net/ipv4/conf/eth0/arp_notify"}
    assert recorded["net/core/somaxconn"] == original_somaxconn

    chk = plugin.run("CHECK", with_prev(conf, add.json), container_id=CID, netns=pod_ns.path)
    assert chk.status == 0, chk.stdout

    dele = plugin.run("DEL", with_prev(conf, add.json), container_id=CID, netns=pod_ns.path)
    assert dele.status == 0, dele.stdout
    assert pod_ns.sysctl("net/core/somaxconn") == original_somaxconn
    assert pod_ns.sysctl("net/ipv4/ip_local_port_range") == original_range
    assert snapshot(plugin, pod_ns) == before
    assert_nothing_left(plugin, pod_ns, net)


def test_args_sysctl_added_to_the_config(inproc, pod_ns, net):
    # args.cni.sysctl adds keys (never overrides: see test_trust.py); without an
    # allowlist only the Kubernetes safe set, such as tcp_fin_timeout.
    conf = net.conf(sysctl={"net.core.somaxconn": "1000", "net.ipv4.tcp_keepalive_time": "100"},
                    args={"cni": {"sysctl": {"net/ipv4/tcp_fin_timeout": "21"}}})
    add = inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    assert pod_ns.sysctl("net/core/somaxconn") == "1000"
    assert pod_ns.sysctl("net/ipv4/tcp_keepalive_time") == "100"
    assert pod_ns.sysctl("net/ipv4/tcp_fin_timeout") == "21"
    assert inproc.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0


# ------------------------------------------------------- dotted ifnames
def test_dotted_interface_name_via_ifname_and_slash_form(plugin, pod_ns, net):
    conf = net.conf(sysctl={"net.ipv4.conf.IFNAME.rp_filter": "2", "net/ipv4/conf/eth0.100/arp_notify": "1",
                            "net/ipv6/conf/eth0.100/disable_ipv6": "1"})
    add = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path, ifname="eth0.100")
    assert add.status == 0, add.stdout
    assert "eth0.100" in pod_ns.links()
    assert pod_ns.sysctl("net/ipv4/conf/eth0.100/rp_filter") == "2"
    assert pod_ns.sysctl("net/ipv4/conf/eth0.100/arp_notify") == "1"
    chk = plugin.run("CHECK", with_prev(conf, add.json), container_id=CID, netns=pod_ns.path, ifname="eth0.100")
    assert chk.status == 0, chk.stdout
    dele = plugin.run("DEL", with_prev(conf, add.json), container_id=CID, netns=pod_ns.path, ifname="eth0.100")
    assert dele.status == 0, dele.stdout
    assert_nothing_left(plugin, pod_ns, net)


def test_dot_form_splits_a_dotted_interface_name(inproc, pod_ns, net):
    """In dot form eth0.100 is two segments (as in runc and Kubernetes): refused, nothing written."""
    conf = net.conf(sysctl={"net.ipv4.conf.eth0.100.rp_filter": "2"})
    rep = inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path, ifname="eth0.100")
    assert rep.code == Code.INVALID_CONFIG and "net.ipv4.conf.eth0.100.rp_filter" in rep.json["msg"], rep.stdout
    assert_refused_up_front(inproc, pod_ns, net)


# ----------------------------------------------------------- rejections
REJECTED = [
    ({"kernel.shmmax": "68719476736"}, "IPC-namespaced: set them through the container runtime, not a network plugin"),
    ({"fs.mqueue.msg_max": "100"}, "IPC-namespaced"),
    ({"kernel.hostname": "evil"}, "UTS"),
    ({"kernel.core_pattern": "|/tmp/x"}, "is not in a separate kernel namespace"),
    ({"vm.swappiness": "1"}, "is not in a separate kernel namespace"),
    ({"net/../../kernel/core_pattern": "|/tmp/x"}, "path segment"),
    ({"net.ipv4.conf.IFNAME.../../..": "1"}, "empty path segment"),
    ({"net/ipv4/conf/../../../../kernel/core_pattern": "|/tmp/x"}, "path segment"),
    ({"/proc/sys/kernel/core_pattern": "|/tmp/x"}, "absolute"),
    ({"net/core/somaxconn\u0000": "1"}, "NUL"),
    ({"net.core.netdev_max_backlog": "10"}, "does not exist in a pod network namespace"),
    ({"net.ipv4.tcp_mem": "1 2 3"}, "does not exist in a pod network namespace"),
    ({"net.core.rmem_max": "1048576"}, "read-only in a pod network namespace"),
    ({"net.ipv4.route.flush": "1"}, "write-only (an action, not a setting)"),
    ({"net/ipv6/route/flush": "1"}, "write-only (an action, not a setting)"),
    ({"net.core.wmem_default": "1048576"}, "read-only in a pod network namespace"),
    ({"net.ipv4.conf": "1"}, "not a regular file"),
    ({"net.core": "1"}, "names a directory"),
    ({"net.ipv4.conf.all": "1"}, "not a regular file"),
    ({"net.ipv4.conf.nosuchif.rp_filter": "1"}, 'no interface "nosuchif"'),
    ({"net.core.somaxconn": 1024}, 'sysctl["net.core.somaxconn"]'),
    ({"net.core.somaxconn": "1\n2"}, "newline"),
]


@pytest.mark.parametrize("sysctls, why", REJECTED, ids=[next(iter(s)) for s, _ in REJECTED])
def test_rejected_before_anything_is_written(inproc, pod_ns, net, sysctls, why):
    before = snapshot(inproc, pod_ns)
    # A good key first: it must not be written either.
    conf = net.conf(sysctl={"net.core.somaxconn": "999", **sysctls})
    rep = inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert rep.code == Code.INVALID_CONFIG, rep.stdout
    msg = rep.json["msg"]
    assert why in msg
    key = next(iter(sysctls))
    assert key.replace("\u0000", "") in msg.replace("\\u0000", "") or repr(key)[1:-1] in msg
    assert snapshot(inproc, pod_ns) == before
    assert_refused_up_front(inproc, pod_ns, net)  # no IPAM call, no veth, no record


def test_netfilter_conntrack_max_is_refused_when_not_per_netns(inproc, pod_ns, net):
    path = "net/netfilter/nf_conntrack_max"
    found = pod_ns.run("sh", "-c", f"test -e /proc/sys/{path} && test ! -w /proc/sys/{path} && echo ro", check=False)
    if "ro" not in found.stdout:
        pytest.skip("nf_conntrack_max is not read-only in a child netns on this kernel")
    before = snapshot(inproc, pod_ns)
    rep = inproc.run("ADD", net.conf(sysctl={"net.netfilter.nf_conntrack_max": "1000"}), container_id=CID,
                     netns=pod_ns.path)
    assert rep.code == Code.INVALID_CONFIG and "net.netfilter.nf_conntrack_max" in rep.json["msg"], rep.stdout
    assert snapshot(inproc, pod_ns) == before
    assert_refused_up_front(inproc, pod_ns, net)


@pytest.mark.parametrize("ifname", ["...", "..x", ".eth0"])
def test_crafted_cni_ifname_cannot_traverse(plugin, pod_ns, net, ifname):
    before = snapshot(plugin, pod_ns)
    conf = net.conf(sysctl={"net.ipv4.conf.IFNAME.rp_filter": "1"})
    rep = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path, ifname=ifname)
    assert rep.code in (Code.INVALID_ENV, Code.INVALID_CONFIG), rep.stdout
    assert snapshot(plugin, pod_ns) == before
    assert_refused_up_front(plugin, pod_ns, net)


@pytest.mark.parametrize("ifname", ["..", "../../x", "a/b"])
def test_traversing_cni_ifname_is_refused_by_the_env_check(inproc, pod_ns, net, ifname):
    before = snapshot(inproc, pod_ns)
    rep = inproc.run("ADD", net.conf(sysctl={"net.ipv4.conf.IFNAME.rp_filter": "1"}), container_id=CID,
                     netns=pod_ns.path, ifname=ifname)
    assert rep.code == Code.INVALID_ENV, rep.stdout
    assert snapshot(inproc, pod_ns) == before
    assert_refused_up_front(inproc, pod_ns, net)


@pytest.mark.parametrize(
    "body",
    [
        '"sysctl": {"net.core.somaxconn": "1", "net/core/somaxconn": "2"}',
        '"sysctl": {"net.ipv4.conf.IFNAME.rp_filter": "1", "net.ipv4.conf.eth0.rp_filter": "2"}',
        '"sysctl": {"net.core.somaxconn": "1", "net.core.somaxconn": "2"}',
        '"args": {"cni": {"sysctl": {"net.core.somaxconn": "1", "net/core/somaxconn": "2"}}}',
    ],
)
def test_duplicate_keys_are_refused(plugin, pod_ns, net, body):
    before = snapshot(plugin, pod_ns)
    raw = json.dumps(net.conf())[:-1] + ", " + body + "}"
    rep = plugin.call(plugin.env("ADD", container_id=CID, netns=pod_ns.path), raw)
    assert rep.code == Code.INVALID_CONFIG and "duplicate" in rep.json["msg"] and "somaxconn" in rep.json["msg"] or \
        rep.code == Code.INVALID_CONFIG and "rp_filter" in rep.json["msg"], rep.stdout
    assert snapshot(plugin, pod_ns) == before
    assert_refused_up_front(plugin, pod_ns, net)


# -------------------------------------------------------------- allowlist
def test_allowlist_allows_and_refuses(plugin, pod_ns, net, tmp_path):
    allow = tmp_path / "allow.conf"
    allow.write_text("# test policy\nnet.core.somaxconn\nnet.ipv4.conf.*\n")
    before = snapshot(plugin, pod_ns)
    conf = net.conf(sysctlAllowlist=str(allow),
                    sysctl={"net/core/somaxconn": "1001", "net.ipv4.conf.IFNAME.rp_filter": "2"})
    add = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    assert pod_ns.sysctl("net/core/somaxconn") == "1001"
    assert plugin.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0
    assert snapshot(plugin, pod_ns) == before

    denied = net.conf(sysctlAllowlist=str(allow), sysctl={"net.core.somaxconn": "1002",
                                                           "net.ipv4.tcp_keepalive_time": "60"})
    rep = plugin.run("ADD", denied, container_id=CID, netns=pod_ns.path)
    assert rep.code == Code.INVALID_CONFIG, rep.stdout
    msg = rep.json["msg"]
    assert '"net.ipv4.tcp_keepalive_time" not allowed by ' + str(allow) in msg
    assert "allowed: net.core.somaxconn, net.ipv4.conf.*" in msg
    assert snapshot(plugin, pod_ns) == before
    assert_nothing_left(plugin, pod_ns, net)


@pytest.mark.parametrize("content", [None, "net.core.somaxconn\nvm.*\n", "net.core.somaxconn\n^net\\.core\n", "dir",
                                     "kernel.sh*\n", "net*\n", "dangling"])
def test_bad_allowlist_is_an_error_not_no_policy(inproc, pod_ns, net, tmp_path, content):
    path = tmp_path / "allow.conf"
    if content == "dir":
        path.mkdir()
    elif content == "dangling":
        path.symlink_to(tmp_path / "gone.conf")
    elif content is not None:
        path.write_text(content)
    before = snapshot(inproc, pod_ns)
    rep = inproc.run("ADD", net.conf(sysctlAllowlist=str(path), sysctl={"net.core.somaxconn": "1003"}),
                     container_id=CID, netns=pod_ns.path)
    assert rep.code == Code.INVALID_CONFIG and str(path) in rep.json["msg"], rep.stdout
    assert snapshot(inproc, pod_ns) == before
    assert_refused_up_front(inproc, pod_ns, net)


def test_default_allowlist_applies_when_present(inproc, pod_ns, net, tmp_path, monkeypatch):
    from nsveth import sysctl

    default = tmp_path / "allowlist.conf"
    default.write_text("net.ipv4.tcp_keepalive_time\n")
    monkeypatch.setattr(sysctl, "DEFAULT_ALLOWLIST", str(default))
    rep = inproc.run("ADD", net.conf(sysctl={"net.core.somaxconn": "1004"}), container_id=CID, netns=pod_ns.path)
    assert rep.code == Code.INVALID_CONFIG and str(default) in rep.json["msg"], rep.stdout
    assert_nothing_left(inproc, pod_ns, net)
    monkeypatch.setattr(sysctl, "DEFAULT_ALLOWLIST", str(tmp_path / "absent.conf"))
    conf = net.conf(sysctl={"net.core.somaxconn": "1004"})
    rep = inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert rep.status == 0, rep.stdout
    assert inproc.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0


def test_dangling_default_allowlist_is_an_error_not_no_policy(inproc, pod_ns, net, tmp_path, monkeypatch):
    """An admin's policy file that went missing behind its symlink must not turn into "allow everything"."""
    from nsveth import sysctl

    default = tmp_path / "allowlist.conf"
    default.symlink_to(tmp_path / "moved-away.conf")
    monkeypatch.setattr(sysctl, "DEFAULT_ALLOWLIST", str(default))
    before = snapshot(inproc, pod_ns)
    rep = inproc.run("ADD", net.conf(sysctl={"net.core.somaxconn": "1004"}), container_id=CID, netns=pod_ns.path)
    assert rep.code == Code.INVALID_CONFIG and str(default) in rep.json["msg"] and "symbolic link" in rep.json["msg"], rep.stdout
    assert snapshot(inproc, pod_ns) == before
    assert_refused_up_front(inproc, pod_ns, net)


def test_allowlist_shared_with_the_kubelet_may_name_ipc_sysctls(inproc, pod_ns, net, tmp_path):
    """The kubelet's --allowed-unsafe-sysctls patterns (kernel.shm*, kernel.msg*, kernel.sem,
    fs.mqueue.*) are valid in the file; they allow no key nsveth would apply."""
    allow = tmp_path / "allow.conf"
    allow.write_text("kernel.shm*\nkernel.msg*\nkernel.sem\nfs.mqueue.*\nnet.core.somaxconn\n")
    conf = net.conf(sysctlAllowlist=str(allow), sysctl={"net.core.somaxconn": "1006"})
    add = inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    assert pod_ns.sysctl("net/core/somaxconn") == "1006"
    assert inproc.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0
    # An IPC key is still refused as such (the allowlist does not make it a network plugin's business).
    rep = inproc.run("ADD", net.conf(sysctlAllowlist=str(allow), sysctl={"kernel.shmmax": "1"}),
                     container_id=CID, netns=pod_ns.path)
    assert rep.code == Code.INVALID_CONFIG and "IPC-namespaced" in rep.json["msg"], rep.stdout
    assert_nothing_left(inproc, pod_ns, net)


def test_k8s_safe_allowlist_example(inproc, pod_ns, net):
    path = SHIPPED_ALLOWLIST
    conf = net.conf(sysctlAllowlist=path, sysctl={"net.ipv4.tcp_keepalive_time": "200",
                                                  "net.ipv4.ip_unprivileged_port_start": "80"})
    add = inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    assert pod_ns.sysctl("net/ipv4/ip_unprivileged_port_start") == "80"
    assert inproc.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0
    rep = inproc.run("ADD", net.conf(sysctlAllowlist=path, sysctl={"net.core.somaxconn": "1"}), container_id=CID,
                     netns=pod_ns.path)
    assert rep.code == Code.INVALID_CONFIG and "net.ipv4.tcp_keepalive_time" in rep.json["msg"], rep.stdout
    assert_nothing_left(inproc, pod_ns, net)


# ------------------------------------------------------- rollback, CHECK
def test_failed_write_restores_earlier_writes_and_rolls_back(plugin, pod_ns, net):
    before = snapshot(plugin, pod_ns)
    conf = net.conf(sysctl={
        "net.core.somaxconn": "1005",
        "net.ipv4.conf.IFNAME.rp_filter": "2",
        "net.ipv4.tcp_keepalive_time": "77",
        "net.ipv4.ip_local_port_range": "40000 30000",  # the kernel refuses an inverted range
    })
    rep = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert rep.code == Code.INVALID_CONFIG, rep.stdout
    assert 'failed to set sysctl "net.ipv4.ip_local_port_range" to "40000 30000"' in rep.json["msg"]
    assert snapshot(plugin, pod_ns) == before
    assert_nothing_left(plugin, pod_ns, net)


def test_originals_are_recorded_before_the_first_write(inproc, pod_ns, net, monkeypatch):
    """A kill between two writes must leave DEL what it needs: the state record holds every
    value that will be replaced before the kernel sees the first write."""
    from nsveth import sysctl

    original = {k: pod_ns.sysctl(k) for k in ("net/core/somaxconn", "net/ipv4/tcp_keepalive_time")}
    recorded_at_first_write = []
    real_write = sysctl._write_fd

    def spying_write(fd, value):
        if not recorded_at_first_write:
            record = state_record(net)
            recorded_at_first_write.append(
                (record["phase"], {"/".join(o["path"]): o["value"] for o in record["sysctlOriginals"]}))
        real_write(fd, value)

    monkeypatch.setattr(sysctl, "_write_fd", spying_write)
    conf = net.conf(sysctl={"net.core.somaxconn": "1007", "net.ipv4.tcp_keepalive_time": "78"})
    add = inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    assert recorded_at_first_write == [("adding", original)]
    assert inproc.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0
    assert {k: pod_ns.sysctl(k) for k in original} == original


@pytest.mark.parametrize("then", ["DEL", "ADD"])
def test_add_killed_after_sysctls_is_undone(exe, pod_ns, net, then):
    """SIGKILL right after the writes (crash hook): the runtime's DEL, or an ADD retry
    with no DEL in between, puts the pod-wide values back before anything else."""
    original = pod_ns.sysctl("net/core/somaxconn")
    conf = net.conf(sysctl={"net.core.somaxconn": "1008"})
    killed = exe.call(exe.env("ADD", CID, pod_ns.path, NSVETH_TEST_CRASH_AT="after-sysctls"), conf)
    assert killed.status == -9 or killed.status == 137, killed
    assert pod_ns.sysctl("net/core/somaxconn") == "1008"
    if then == "DEL":
        assert exe.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0
    else:
        # The retry asks for no sysctls: what the killed ADD wrote must not stay.
        retry = exe.run("ADD", net.conf(), container_id=CID, netns=pod_ns.path)
        assert retry.status == 0, retry.stdout
        assert pod_ns.sysctl("net/core/somaxconn") == original
        assert exe.run("DEL", net.conf(), container_id=CID, netns=pod_ns.path).status == 0
    assert pod_ns.sysctl("net/core/somaxconn") == original
    assert_nothing_left(exe, pod_ns, net)


def test_per_interface_keys_of_the_new_interface_are_probed_up_front(inproc, pod_ns, net):
    """Before the interface exists its keys are probed on lo's directory: neigh/<if> has no
    gc_thresh1 (only the host's neigh/default has), so it is refused before IPAM."""
    before = snapshot(inproc, pod_ns)
    conf = net.conf(sysctl={"net.core.somaxconn": "1009", "net.ipv4.neigh.IFNAME.gc_thresh1": "64"})
    rep = inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert rep.code == Code.INVALID_CONFIG and '"net.ipv4.neigh.IFNAME.gc_thresh1" does not exist' in rep.json["msg"], rep.stdout
    assert snapshot(inproc, pod_ns) == before
    assert_refused_up_front(inproc, pod_ns, net)


def test_neigh_and_ipv6_per_interface_keys(inproc, pod_ns, net):
    # (A *_ms value is kept in jiffies: choose one the kernel reads back as written.)
    conf = net.conf(sysctl={"net.ipv4.neigh.IFNAME.base_reachable_time_ms": "30000",
                            "net/ipv6/neigh/IFNAME/retrans_time_ms": "2000",
                            "net.ipv6.conf.IFNAME.accept_ra": "0"})
    add = inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    assert pod_ns.sysctl("net/ipv4/neigh/eth0/base_reachable_time_ms") == "30000"
    assert pod_ns.sysctl("net/ipv6/neigh/eth0/retrans_time_ms") == "2000"
    assert inproc.run("CHECK", with_prev(conf, add.json), container_id=CID, netns=pod_ns.path).status == 0
    assert inproc.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0
    assert_nothing_left(inproc, pod_ns, net)


@pytest.mark.parametrize("value", [1024, True, None, {"a": "b"}, ["1"], 1.5])
@pytest.mark.parametrize("where", ["sysctl", "args"])
def test_non_string_values_name_the_key(inproc, pod_ns, net, value, where):
    body = {"net.ipv4.tcp_keepalive_time": value}
    conf = net.conf(sysctl=body) if where == "sysctl" else net.conf(args={"cni": {"sysctl": body}})
    rep = inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert rep.code == Code.INVALID_CONFIG, rep.stdout
    assert '["net.ipv4.tcp_keepalive_time"]' in rep.json["msg"] and "string" in rep.json["msg"]
    assert_refused_up_front(inproc, pod_ns, net)


def test_check_catches_a_value_changed_by_hand(plugin, pod_ns, net):
    conf = net.conf(sysctl={"net.core.somaxconn": "1006", "net.ipv4.conf.IFNAME.rp_filter": "2"})
    add = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    try:
        pod_ns.run("sh", "-c", "echo 77 > /proc/sys/net/core/somaxconn; echo 0 > /proc/sys/net/ipv4/conf/eth0/rp_filter")
        chk = plugin.run("CHECK", with_prev(conf, add.json), container_id=CID, netns=pod_ns.path)
        assert chk.code == Code.CHECK_FAILED, chk.stdout
        assert 'sysctl net.core.somaxconn is "77", expected "1006"' in chk.json["msg"]
        assert 'sysctl net.ipv4.conf.IFNAME.rp_filter is "0", expected "2"' in chk.json["msg"]
    finally:
        assert plugin.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0
    assert_nothing_left(plugin, pod_ns, net)


def test_check_accepts_the_kernels_normalised_value(plugin, pod_ns, net):
    """The kernel keeps *_ms in jiffies and parses hex: CHECK compares with what it showed after ADD."""
    conf = net.conf(sysctl={"net.ipv4.neigh.IFNAME.base_reachable_time_ms": "12345", "net.core.somaxconn": "0x400"})
    add = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    try:
        assert pod_ns.sysctl("net/core/somaxconn") == "1024"
        shown = pod_ns.sysctl("net/ipv4/neigh/eth0/base_reachable_time_ms")
        chk = plugin.run("CHECK", with_prev(conf, add.json), container_id=CID, netns=pod_ns.path)
        assert chk.status == 0, chk.stdout
        pod_ns.run("sh", "-c", "echo 1000 > /proc/sys/net/core/somaxconn")
        chk = plugin.run("CHECK", with_prev(conf, add.json), container_id=CID, netns=pod_ns.path)
        assert chk.code == Code.CHECK_FAILED and chk.json["msg"] == 'sysctl net.core.somaxconn is "1000", expected "0x400"', chk.stdout
        assert shown in ("12345", "12348", "12344", "12350", "12340")  # HZ-dependent rounding
    finally:
        assert plugin.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0
    assert_nothing_left(plugin, pod_ns, net)


def test_del_without_netns_has_nothing_to_restore(inproc, pod_ns, net):
    conf = net.conf(sysctl={"net.core.somaxconn": "1007"})
    add = inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    path = pod_ns.path
    pod_ns.delete()
    dele = inproc.run("DEL", conf, container_id=CID, netns=path)
    assert dele.status == 0, dele.stdout
    assert net.leases() == [] and net.state_files() == [] and host_veths(inproc.host) == []


def test_del_restores_even_when_the_interface_is_gone(inproc, pod_ns, net):
    original = pod_ns.sysctl("net/core/somaxconn")
    conf = net.conf(sysctl={"net.core.somaxconn": "1008", "net.ipv4.conf.IFNAME.rp_filter": "2"})
    assert inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path).status == 0
    pod_ns.run("ip", "link", "del", "eth0")
    dele = inproc.run("DEL", conf, container_id=CID, netns=pod_ns.path)
    assert dele.status == 0, dele.stdout
    assert pod_ns.sysctl("net/core/somaxconn") == original
    assert_nothing_left(inproc, pod_ns, net)


# ------------------------------------------------------------------- IPv6
def test_disable_ipv6_drops_the_address_from_the_result(plugin, pod_ns, net):
    conf = net.conf(subnets=["10.77.0.0/24", "fd77::/64"], sysctl={"net.ipv6.conf.IFNAME.disable_ipv6": "1"})
    add = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    res = add.json
    assert [ip["address"] for ip in res["ips"]] == ["10.77.0.2/24"]
    assert [r["dst"] for r in res.get("routes", [])] == ["0.0.0.0/0"]
    assert pod_ns.addresses("eth0") == ["10.77.0.2/24"]
    host_if = res["interfaces"][0]["name"]
    host_v6_routes = [r["dst"] for r in plugin.host.routes("-6") if r.get("dev") == host_if]
    assert not any(d.startswith("fd77::2") for d in host_v6_routes), host_v6_routes
    assert plugin.host.run("ping", "-c1", "-W2", "10.77.0.2").returncode == 0
    chk = plugin.run("CHECK", with_prev(conf, res), container_id=CID, netns=pod_ns.path)
    assert chk.status == 0, chk.stdout
    dele = plugin.run("DEL", with_prev(conf, res), container_id=CID, netns=pod_ns.path)
    assert dele.status == 0, dele.stdout
    assert_nothing_left(plugin, pod_ns, net)


def test_dual_stack_without_disable_keeps_ipv6(inproc, pod_ns, net):
    conf = net.conf(subnets=["10.77.0.0/24", "fd77::/64"], sysctl={"net.ipv6.conf.IFNAME.accept_ra": "0"})
    add = inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    assert [ip["address"] for ip in add.json["ips"]] == ["10.77.0.2/24", "fd77::2/64"]
    assert inproc.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0
    assert_nothing_left(inproc, pod_ns, net)


# ------------------------------------------------------- conflist example
def test_sysctl_conflist_example_end_to_end(plugin, pod_ns, net):
    conf = net.from_example("sysctl.conflist")
    # The example names the allowlist where an install puts conf-examples/allowlist-k8s-safe.txt.
    assert conf["sysctlAllowlist"] == "/etc/cni/nsveth/allowlist.conf"
    conf["sysctlAllowlist"] = SHIPPED_ALLOWLIST
    before = snapshot(plugin, pod_ns)
    add = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    for key, value in conf["sysctl"].items():
        assert pod_ns.sysctl(key.replace(".", "/").replace("IFNAME", "eth0")).split() == value.split(), key
    chk = plugin.run("CHECK", with_prev(conf, add.json), container_id=CID, netns=pod_ns.path)
    assert chk.status == 0, chk.stdout
    dele = plugin.run("DEL", with_prev(conf, add.json), container_id=CID, netns=pod_ns.path)
    assert dele.status == 0, dele.stdout
    assert snapshot(plugin, pod_ns) == before
    assert host_veths(plugin.host) == [] and net.state_files() == []
