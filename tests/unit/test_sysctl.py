"""The pure sysctl key rules: forms, classification, segments, duplicates, values, allowlist."""

from __future__ import annotations

import os

import pytest
import support
from hypothesis import given, settings
from hypothesis import strategies as st
from nsveth import procsys, sysctl
from nsveth.errors import CNIError, Code


def rejected(fn, *args) -> str:
    with pytest.raises(CNIError) as e:
        fn(*args)
    assert e.value.code == Code.INVALID_CONFIG
    return e.value.msg


# ------------------------------------------------------------------ forms
@pytest.mark.parametrize(
    "key, segments",
    [
        ("net.ipv4.tcp_keepalive_time", ("net", "ipv4", "tcp_keepalive_time")),
        ("net/ipv4/tcp_keepalive_time", ("net", "ipv4", "tcp_keepalive_time")),
        ("net/ipv4/conf/eth0.100/rp_filter", ("net", "ipv4", "conf", "eth0.100", "rp_filter")),
        ("net.ipv4.conf.eth0/100.rp_filter", ("net", "ipv4", "conf", "eth0/100", "rp_filter")),
        ("net", ("net",)),
    ],
)
def test_split_first_separator_decides(key, segments):
    assert sysctl.split(key) == segments


@pytest.mark.parametrize(
    "key, dotted",
    [
        ("net/ipv4/conf/eth0.100/rp_filter", "net.ipv4.conf.eth0/100.rp_filter"),  # runc's/kubelet's example
        ("net.core.somaxconn", "net.core.somaxconn"),
        ("net/core/somaxconn", "net.core.somaxconn"),
        ("kernel/shmmax", "kernel.shmmax"),
    ],
)
def test_normalise_to_dot_form(key, dotted):
    assert sysctl.normalise(key) == dotted


def test_ifname_placeholder_keeps_dotted_names_one_segment():
    s = sysctl.parse("net.ipv4.conf.IFNAME.rp_filter", "2", "eth0.100")
    assert s.segments == ("net", "ipv4", "conf", "eth0.100", "rp_filter")
    assert s.path == "net/ipv4/conf/eth0.100/rp_filter"
    assert s.name == "net.ipv4.conf.eth0/100.rp_filter"
    assert s.interface() == "eth0.100"
    slash = sysctl.parse("net/ipv4/conf/eth0.100/rp_filter", "2", "eth0")
    assert slash.segments == s.segments
    assert sysctl.parse("net.core.somaxconn", "1", "eth0").interface() is None
    assert sysctl.parse("net.ipv6.neigh.IFNAME.retrans_time_ms", "1", "e").interface() == "e"


# --------------------------------------------------------- classification
@pytest.mark.parametrize(
    "key", ["kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
            "kernel.shmmni", "kernel.shm_rmid_forced", "fs.mqueue.msg_max", "fs/mqueue/queues_max"],
)
def test_ipc_keys_are_refused_as_ipc(key):
    msg = rejected(sysctl.parse, key, "1", "eth0")
    assert f'"{key}"' in msg
    assert "IPC-namespaced: set them through the container runtime, not a network plugin" in msg


@pytest.mark.parametrize("key", ["kernel.hostname", "kernel.domainname", "kernel/hostname"])
def test_uts_keys_are_refused_as_uts(key):
    assert "UTS" in rejected(sysctl.parse, key, "x", "eth0")


@pytest.mark.parametrize("key", ["vm.swappiness", "kernel.core_pattern", "fs.file-max", "dev.tty.ldisc_autoload",
                                 "kernel/core_pattern", "netfoo.x.y", "NET.core.somaxconn", "somaxconn"])
def test_other_keys_are_not_namespaced(key):
    msg = rejected(sysctl.parse, key, "1", "eth0")
    assert f'"{key}"' in msg and "is not in a separate kernel namespace" in msg


def test_user_keys_are_refused():
    assert "user-namespaced" in rejected(sysctl.parse, "user.max_net_namespaces", "1", "eth0")


def test_classify_net_is_none():
    assert sysctl.classify("net.core.somaxconn") is None
    assert sysctl.classify("net") is not None


# ---------------------------------------------------------------- escapes
@pytest.mark.parametrize(
    "key",
    [
        "net/../../kernel/core_pattern",
        "net.ipv4.conf.IFNAME.../../..",
        "net/ipv4/../../kernel/core_pattern",
        "net/ipv4/conf/../../../kernel/core_pattern",
        "net/./core/somaxconn",
        "net//core/somaxconn",
        "net.core..somaxconn",
        "net.core.somaxconn.",
        "net/core/somaxconn/",
        "/proc/sys/net/core/somaxconn",
        "/net/core/somaxconn",
        "net/core/soma\0xconn",
        "net.core.soma xconn",
        "net/ipv4/conf/.hidden/rp_filter",
        "net/ipv4/conf/eth0;ls/rp_filter",
        "net/ipv4/conf/eth0\\x/rp_filter",
        "net.ipv4.conf.eth0:1.rp_filter",
        "net/ipv4/conf/ö/rp_filter",
        "net.core",
        "net",
        "",
    ],
)
def test_escapes_and_bad_segments_are_refused(key):
    rejected(sysctl.parse, key, "1", "eth0")


@pytest.mark.parametrize("ifname", ["..", ".", "...", ".x", "a b", "a/b", "x\0"])
def test_crafted_ifname_cannot_traverse(ifname):
    msg = rejected(sysctl.parse, "net.ipv4.conf.IFNAME.rp_filter", "1", ifname)
    assert "net.ipv4.conf.IFNAME.rp_filter" in msg


def test_dot_form_traversal_message_names_the_key():
    msg = rejected(sysctl.parse, "net.ipv4.conf.IFNAME.../../..", "1", "eth0")
    assert "net.ipv4.conf.IFNAME.../../.." in msg and "empty path segment" in msg


# ----------------------------------------------------------------- values
@pytest.mark.parametrize("value", [1024, 1.5, True, None, ["1"], {"a": "b"}])
def test_non_string_values_are_refused_naming_the_key(value):
    msg = rejected(sysctl.parse, "net.core.somaxconn", value, "eth0")
    assert '"net.core.somaxconn"' in msg and "must be a string" in msg


@pytest.mark.parametrize("value", ["1\n", "1\n2", "1\0", "1\r", "", "   ", "x" * 5000])
def test_bad_string_values_are_refused(value):
    assert "net.core.somaxconn" in rejected(sysctl.parse, "net.core.somaxconn", value, "eth0")


def test_multi_value_strings_are_accepted():
    assert sysctl.parse("net.ipv4.ip_local_port_range", "1024 65000", "eth0").value == "1024 65000"
    assert sysctl.same_value("1024\t65000", "1024 65000")
    assert not sysctl.same_value("1024\t65000", "1024 65001")


# -------------------------------------------------------- plan/duplicates
def test_plan_keeps_config_then_args():
    got = sysctl.plan(
        {"net.core.somaxconn": "100", "net.ipv4.tcp_keepalive_time": "60"},
        {"net/ipv4/tcp_fin_timeout": "20"},
        "eth0",
    )
    assert [(s.key, s.path, s.value) for s in got] == [
        ("net.core.somaxconn", "net/core/somaxconn", "100"),
        ("net.ipv4.tcp_keepalive_time", "net/ipv4/tcp_keepalive_time", "60"),
        ("net/ipv4/tcp_fin_timeout", "net/ipv4/tcp_fin_timeout", "20"),
    ]


# ------------------------------------------------ args are a pod author's
@pytest.mark.parametrize(
    "config,args",
    [
        ({"net.core.somaxconn": "100"}, {"net/core/somaxconn": "200"}),
        ({"net.ipv4.conf.IFNAME.rp_filter": "1"}, {"net/ipv4/conf/eth0/rp_filter": "0"}),
        ({"net.ipv4.tcp_keepalive_time": "60"}, {"net.ipv4.tcp_keepalive_time": "60"}),  # even the same value
    ],
)
def test_args_never_override_the_config(config, args):
    allow = sysctl.parse_allowlist("net.*", "/a")
    for allowlist in (None, allow):
        msg = rejected(sysctl.plan, config, args, "eth0", allowlist)
        assert f'args.cni.sysctl "{next(iter(args))}"' in msg and f'sysctl "{next(iter(config))}"' in msg
        assert "override" in msg


def test_args_without_allowlist_only_the_k8s_safe_set():
    msg = rejected(sysctl.plan, None, {"net.ipv4.conf.IFNAME.rp_filter": "0"}, "eth0")
    assert '"net.ipv4.conf.IFNAME.rp_filter" from args.cni.sysctl' in msg and "Kubernetes safe set" in msg
    assert "net.ipv4.ip_local_port_range" in msg  # lists what is allowed
    (s,) = sysctl.plan(None, {"net/ipv4/ip_local_port_range": "20000 40000"}, "eth0")
    assert s.path == "net/ipv4/ip_local_port_range"


def test_config_keys_without_allowlist_are_the_admins_choice():
    assert len(sysctl.plan({"net.ipv4.conf.IFNAME.rp_filter": "0", "net.core.somaxconn": "1"}, None, "eth0")) == 2


def test_args_with_allowlist_follow_the_allowlist():
    a = sysctl.parse_allowlist("net.core.somaxconn\n", "/etc/policy")
    assert len(sysctl.plan(None, {"net.core.somaxconn": "1"}, "eth0", a)) == 1
    msg = rejected(sysctl.plan, None, {"net.ipv4.tcp_keepalive_time": "60"}, "eth0", a)  # safe, but not allowed here
    assert "args.cni.sysctl" in msg and "/etc/policy" in msg


def test_k8s_safe_example_file_is_the_k8s_safe_set():
    path = support.SHIPPED_ALLOWLIST
    with open(path) as f:
        assert sysctl.parse_allowlist(f.read(), path).patterns == sysctl.K8S_SAFE


# ------------------------------------------------------ module autoload
CC = ("net", "ipv4", "tcp_available_congestion_control")


@pytest.mark.parametrize("key", ["net.ipv4.tcp_congestion_control", "net/ipv4/tcp_allowed_congestion_control"])
def test_module_loading_values_are_refused(key):
    (s,) = sysctl.plan({key: "dctcp"}, None, "eth0")
    msg = rejected(sysctl.refuse_module_loading, [s], {CC: "reno cubic"})
    assert f'"{key}"' in msg and '"dctcp"' in msg and "load a module" in msg
    rejected(sysctl.refuse_module_loading, [s], {CC: None})  # unreadable list: nothing proves it is loaded


def test_available_values_are_accepted():
    wanted = sysctl.plan({"net.ipv4.tcp_congestion_control": "cubic", "net.core.somaxconn": "1"}, None, "eth0")
    sysctl.refuse_module_loading(wanted, {CC: "reno\tcubic bbr"})


@pytest.mark.parametrize(
    "obj",
    [
        {"net.core.somaxconn": "1", "net/core/somaxconn": "2"},
        {"net.ipv4.conf.IFNAME.rp_filter": "1", "net.ipv4.conf.eth0.rp_filter": "2"},
        {"net.ipv4.conf.IFNAME.rp_filter": "1", "net/ipv4/conf/eth0/rp_filter": "2"},
    ],
)
def test_duplicates_after_normalisation_are_refused(obj):
    msg = rejected(sysctl.plan, obj, None, "eth0")
    assert "duplicate sysctl in sysctl" in msg
    msg = rejected(sysctl.plan, None, obj, "eth0")
    assert "duplicate sysctl in args.cni.sysctl" in msg


def test_dotted_ifname_is_not_a_duplicate_of_a_split_key():
    got = sysctl.plan({"net/ipv4/conf/eth0.100/rp_filter": "1", "net.ipv4.conf.IFNAME.rp_filter": "2"}, None, "eth0")
    assert sorted(s.path for s in got) == ["net/ipv4/conf/eth0.100/rp_filter", "net/ipv4/conf/eth0/rp_filter"]


def test_plan_checks_every_key_before_returning():
    # A good key first does not make a bad later one pass.
    rejected(sysctl.plan, {"net.core.somaxconn": "1", "vm.swappiness": "1"}, None, "eth0")
    rejected(sysctl.plan, {"net.core.somaxconn": "1"}, {"kernel.shmmax": "1"}, "eth0")


def test_empty_plan():
    assert sysctl.plan(None, None, "eth0") == ()
    assert sysctl.plan({}, {}, "eth0", sysctl.parse_allowlist("", "x")) == ()


# -------------------------------------------------------------- allowlist
K8S_SAFE = """
# comment
net.ipv4.ip_local_port_range
net.ipv4.tcp_syncookies   # trailing comment
net.ipv4.conf.*, net/ipv6/conf/eth0.100/*
kernel.shm_rmid_forced
"""


def test_allowlist_anchored_exact_and_prefix():
    a = sysctl.parse_allowlist(K8S_SAFE, "/x")
    assert a.patterns == (
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.conf.*",
        "net.ipv6.conf.eth0/100.*",
        "kernel.shm_rmid_forced",
    )
    assert a.allows("net.ipv4.ip_local_port_range")
    assert not a.allows("net.ipv4.ip_local_port_range2")  # anchored at the end
    assert not a.allows("xnet.ipv4.ip_local_port_range")  # and at the start
    assert a.allows("net.ipv4.conf.eth0.rp_filter")
    assert a.allows("net.ipv4.conf.eth0/100.rp_filter")
    assert a.allows("net.ipv6.conf.eth0/100.disable_ipv6")
    assert not a.allows("net.ipv6.conf.eth0.disable_ipv6")
    assert not a.allows("net.core.somaxconn")


def test_allowlist_matches_both_forms_and_ifname():
    a = sysctl.parse_allowlist("net.core.somaxconn\nnet.ipv4.conf.*\n", "/a")
    assert len(sysctl.plan({"net/core/somaxconn": "1"}, None, "eth0", a)) == 1
    assert len(sysctl.plan({"net.ipv4.conf.IFNAME.rp_filter": "1"}, None, "eth0.100", a)) == 1
    assert len(sysctl.plan({"net/ipv4/conf/eth0.100/rp_filter": "1"}, None, "eth0", a)) == 1


def test_allowlist_denial_lists_what_is_allowed():
    a = sysctl.parse_allowlist("net.core.somaxconn\nnet.ipv4.conf.*\n", "/etc/policy")
    msg = rejected(sysctl.plan, {"net.core.somaxconn": "1", "net.ipv4.tcp_keepalive_time": "60"}, None, "eth0", a)
    assert '"net.ipv4.tcp_keepalive_time"' in msg and "somaxconn\"" not in msg
    assert "/etc/policy" in msg and "net.core.somaxconn, net.ipv4.conf.*" in msg


def test_empty_allowlist_allows_nothing():
    a = sysctl.parse_allowlist("# nothing\n\n", "/e")
    assert "allowed: nothing" in rejected(sysctl.plan, {"net.core.somaxconn": "1"}, None, "eth0", a)


@pytest.mark.parametrize(
    "line",
    [
        "net.core.*x",
        "net..core",
        "Net.core.somaxconn",
        "net.core.somaxconn!",
        "^net\\.core",
        "*",
        "n*",
        "vm.swappiness",
        "kernel.*",
        "kernel.sh*",
        "kernel.se*",
        "net*",
        "net.core.some thing",
        "net/core/" + "a" * 260,
        ".net.core",
        "net.core.-x",
    ],
)
def test_malformed_allowlist_is_an_error(line):
    msg = rejected(sysctl.parse_allowlist, f"net.core.somaxconn\n{line}\n", "/p")
    assert "/p line 2" in msg


def test_allowlist_patterns_may_be_ipc_or_net_prefixes():
    # The kubelet's own prefixes (namespace.go): one file can serve both.
    a = sysctl.parse_allowlist("net.*\nfs.mqueue.*\nkernel.sem\nkernel.shm*\nkernel.msg*\nkernel.shmmax\n", "/p")
    assert a.allows("net.anything.at_all")
    assert a.allows("kernel.shm_rmid_forced") and a.allows("kernel.msgmax")


def test_load_allowlist(tmp_path, monkeypatch):
    monkeypatch.setattr(sysctl, "DEFAULT_ALLOWLIST", str(tmp_path / "absent.conf"))
    assert sysctl.load_allowlist(None) is None  # no default file: no policy
    with pytest.raises(CNIError) as e:
        sysctl.load_allowlist(str(tmp_path / "absent.conf"))  # named explicitly: must exist
    assert e.value.code == Code.INVALID_CONFIG and "does not exist" in e.value.msg
    good = tmp_path / "a.conf"
    good.write_text("net.core.somaxconn\n")
    assert sysctl.load_allowlist(str(good)).patterns == ("net.core.somaxconn",)
    monkeypatch.setattr(sysctl, "DEFAULT_ALLOWLIST", str(good))
    assert sysctl.load_allowlist(None).patterns == ("net.core.somaxconn",)
    assert "not a regular file" in rejected(sysctl.load_allowlist, str(tmp_path))
    assert "cannot be read" in rejected(sysctl.load_allowlist, str(good / "x"))  # ENOTDIR
    bad = tmp_path / "bad.conf"
    bad.write_bytes(b"\xff\xfe")
    assert "UTF-8" in rejected(sysctl.load_allowlist, str(bad))
    bad.write_text("net.core.somaxconn\nvm.*\n")
    monkeypatch.setattr(sysctl, "DEFAULT_ALLOWLIST", str(bad))
    rejected(sysctl.load_allowlist, None)  # a malformed default is an error too, never "no policy"


def test_unreadable_allowlist_is_an_error(tmp_path, monkeypatch):
    f = tmp_path / "a.conf"
    f.write_text("net.*\n")
    real_open = os.open

    def denied(path, *args, **kw):  # root reads any file: simulate the EACCES a non-root reader gets
        if path == str(f):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kw)

    monkeypatch.setattr(sysctl.os, "open", denied)
    assert "cannot be read" in rejected(sysctl.load_allowlist, str(f))


def test_shipped_k8s_allowlist_parses():
    path = support.SHIPPED_ALLOWLIST
    with open(path) as f:
        a = sysctl.parse_allowlist(f.read(), path)
    assert "net.ipv4.ip_local_port_range" in a.patterns and "net.ipv4.tcp_keepalive_time" in a.patterns
    assert all(p.startswith("net.") for p in a.patterns)


# ------------------------------------------------------------------ CHECK
def test_compare_reports_each_difference():
    wanted = sysctl.plan({"net.core.somaxconn": "512", "net.ipv4.ip_local_port_range": "1024 2048",
                          "net.ipv4.tcp_keepalive_time": "60"}, None, "eth0")
    seen = {"net.core.somaxconn": "4096", "net.ipv4.ip_local_port_range": "1024\t2048",
            "net.ipv4.tcp_keepalive_time": None}
    assert sysctl.compare(wanted, seen) == [
        'sysctl net.core.somaxconn is "4096", expected "512"',
        'sysctl net.ipv4.tcp_keepalive_time cannot be read in the pod netns, expected "60"',
    ]


def test_compare_accepts_the_value_the_kernel_showed_after_add():
    wanted = sysctl.plan({"net.core.somaxconn": "0x400"}, None, "eth0")
    applied = {("net", "core", "somaxconn"): "1024"}
    assert sysctl.compare(wanted, {"net.core.somaxconn": "1024"}, applied) == []
    assert sysctl.compare(wanted, {"net.core.somaxconn": "0x400"}, applied) == []
    assert sysctl.compare(wanted, {"net.core.somaxconn": "1024"}) == [
        'sysctl net.core.somaxconn is "1024", expected "0x400"'
    ]
    assert sysctl.compare(wanted, {"net.core.somaxconn": "512"}, applied) == [
        'sysctl net.core.somaxconn is "512", expected "0x400"'
    ]


# ---------------------------------------------------------- state records
def test_original_round_trip_and_untrusted_records():
    o = sysctl.Original(("net", "ipv4", "conf", "eth0.100", "rp_filter"), "1")
    assert sysctl.Original.from_json(o.to_json()) == o
    o2 = sysctl.Original(("net", "core", "somaxconn"), "4096", "1024")
    assert sysctl.Original.from_json(o2.to_json()) == o2
    for bad in [
        None, [], {"path": ["net", "..", "kernel", "core_pattern"], "value": "x"},
        {"path": ["kernel", "core", "pattern"], "value": "x"}, {"path": ["net", "core"], "value": "1"},
        {"path": ["net", "core", "somaxconn"], "value": 1}, {"path": "net/core/somaxconn", "value": "1"},
        {"path": ["net", "core", "a/b"], "value": "1"}, {"path": ["net", "core", "somaxconn"], "value": "1\n2"},
    ]:
        assert sysctl.Original.from_json(bad) is None, bad


# ------------------------------------------- the no-follow walk, on a fake tree
@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    """A stand-in for /proc/sys/net holding the shapes a safe walk must refuse."""
    root = tmp_path / "net"
    (root / "core").mkdir(parents=True)
    (root / "ipv4" / "conf" / "lo").mkdir(parents=True)
    (root / "core" / "somaxconn").write_text("4096\n")
    (root / "ipv4" / "conf" / "lo" / "rp_filter").write_text("0\n")
    ro = root / "core" / "rmem_max"
    ro.write_text("212992\n")
    ro.chmod(0o444)
    (tmp_path / "secret").write_text("host\n")
    (root / "core" / "link").symlink_to(tmp_path / "secret")
    (root / "evil").symlink_to(tmp_path)
    os.mkfifo(root / "core" / "fifo")
    monkeypatch.setattr(procsys, "ROOT", str(root))
    return root


def one(key: str, value: str = "1", ifname: str = "eth0") -> tuple[sysctl.Sysctl, ...]:
    return sysctl.plan({key: value}, None, ifname)


def test_walk_refuses_symlinks_and_non_regular_files(fake_root):
    assert "symbolic link" in rejected(sysctl.probe, one("net/core/link"), "eth0")
    assert "Not a directory" in rejected(sysctl.probe, one("net/evil/secret"), "eth0")  # O_DIRECTORY+O_NOFOLLOW
    assert "not a regular file" in rejected(sysctl.probe, one("net/core/fifo"), "eth0")
    assert "not a regular file" in rejected(sysctl.probe, one("net/ipv4/conf"), "eth0")
    with pytest.raises(CNIError):
        sysctl.apply(one("net/core/link"))
    assert (fake_root.parent / "secret").read_text() == "host\n"
    assert sysctl.read(one("net/core/link")) == {"net/core/link": None}


def test_probe_absent_read_only_and_new_interface(fake_root):
    sysctl.probe(one("net.core.somaxconn"), "eth0")
    sysctl.probe(one("net.ipv4.conf.IFNAME.rp_filter"), "eth0")  # probed on "lo"
    assert "does not exist in a pod network namespace" in rejected(sysctl.probe, one("net.core.nope"), "eth0")
    assert 'no interface "eth1"' in rejected(sysctl.probe, one("net.ipv4.conf.eth1.rp_filter"), "eth0")
    # Mode bits, not access(): the kernel refuses root a read-only sysctl too.
    assert "read-only" in rejected(sysctl.probe, one("net.core.rmem_max"), "eth0")


def test_tree_open_refuses_unsafe_segments_even_when_handed_them(fake_root):
    tree = procsys.Tree()
    try:
        for segments in [("net", "..", "secret"), ("net", "core", "."), ("kernel", "x"), ("net",), ("net", "a/b"),
                         ("net", "")]:
            with pytest.raises(ValueError):
                tree.open(segments, os.O_RDONLY)
    finally:
        tree.close()


def test_apply_restore_read_on_a_tree(fake_root):
    wanted = sysctl.plan({"net.core.somaxconn": "1024"}, None, "eth0")
    before = [sysctl.Original(("net", "core", "somaxconn"), "4096")]
    assert sysctl.pending(wanted) == before
    assert sysctl.read(wanted) == {"net.core.somaxconn": "4096"}  # pending writes nothing
    originals = sysctl.apply(wanted)
    assert originals == before
    assert sysctl.pending(wanted) == []
    assert sysctl.read(wanted) == {"net.core.somaxconn": "1024"}
    assert sysctl.apply(wanted) == []  # already so: nothing written, nothing recorded
    assert sysctl.restore(originals) == []
    assert sysctl.read(wanted) == {"net.core.somaxconn": "4096"}


# ------------------------------------------------------------- properties
_ALPHABET = st.sampled_from(list("net.ipv4/conf.IFNAME..//.-_@+ \0\nkernelAZaz09*~"))


@settings(max_examples=400, deadline=None)
@given(key=st.text(_ALPHABET, max_size=40), ifname=st.text(st.sampled_from(list("eth0.-_@/:. ")), min_size=1, max_size=8))
def test_any_key_is_refused_or_stays_under_net(key, ifname):
    try:
        (s,) = sysctl.plan({key: "1"}, None, ifname)
    except CNIError as e:
        assert e.code == Code.INVALID_CONFIG
        return
    assert s.segments[0] == "net" and len(s.segments) >= 3
    for seg in s.segments:
        assert seg and "/" not in seg and "\0" not in seg and not seg.startswith(".")
    assert os.path.normpath("/proc/sys/" + s.path) == "/proc/sys/" + s.path


@pytest.mark.parametrize("where", [("sysctl",), ("args", "cni", "sysctl")])
def test_schema_message_names_the_key_of_a_non_string_value(where):
    from nsveth import schema

    doc: dict = {"cniVersion": "1.0.0", "name": "n", "type": "nsveth", "ipam": {"type": "host-local"}}
    inner = doc
    for part in where[:-1]:
        inner = inner.setdefault(part, {})
    inner[where[-1]] = {"net.core.somaxconn": 1024}
    with pytest.raises(CNIError) as e:
        schema.validate(doc)
    assert e.value.code == Code.INVALID_CONFIG
    assert '.'.join(where) + '["net.core.somaxconn"]: 1024 is not of type \'string\'' in e.value.msg


def test_the_plan_is_built_from_the_typed_config():
    """commands reads NetConf's sysctl maps, not the raw document (which holds them too)."""
    import dataclasses
    import json

    from nsveth import commands, config, request

    raw = {
        "cniVersion": "1.0.0",
        "name": "n",
        "type": "nsveth",
        "ipam": {"type": "host-local"},
        "sysctl": {"net.core.somaxconn": "1024"},
        "args": {"cni": {"sysctl": {"net.ipv4.tcp_keepalive_time": "100"}}},
    }
    req = request.parse(support.cni_env("ADD", "c1", "/run/netns/x"))
    conf = dataclasses.replace(config.load(json.dumps(raw).encode(), req), doc={})
    planned = commands._sysctl_plan(req, conf)
    assert [(s.key, s.value) for s in planned] == [("net.core.somaxconn", "1024"), ("net.ipv4.tcp_keepalive_time", "100")]
