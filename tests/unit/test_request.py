"""request.parse: CNI_* environment rules (skel's required vars, container ID, ifname, CNI_ARGS)."""

from __future__ import annotations

import pytest
from nsveth import request
from nsveth.errors import CNIError, Code

FULL = {
    "CNI_CONTAINERID": "abc123",
    "CNI_NETNS": "/var/run/netns/x",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
}

REQUIRED = {
    "ADD": ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
    "CHECK": ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
    "DEL": ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
    "GC": ["CNI_PATH"],
    "STATUS": ["CNI_PATH"],
    "VERSION": [],
}


def env(command: str, **overrides: str | None) -> dict[str, str]:
    e = {"CNI_COMMAND": command, **FULL}
    for k, v in overrides.items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return e


def error(e: dict[str, str]) -> CNIError:
    with pytest.raises(CNIError) as info:
        request.parse(e)
    return info.value


# ----------------------------------------------------------- required env
@pytest.mark.parametrize("command", list(REQUIRED))
def test_full_env_accepted(command):
    req = request.parse(env(command))
    assert req.command == command
    assert req.env["CNI_COMMAND"] == command
    if command != "VERSION":  # VERSION reads nothing else
        assert req.container_id == "abc123"
        assert req.path == ("/opt/cni/bin", "/usr/lib/cni")


@pytest.mark.parametrize("command", list(REQUIRED))
def test_minimal_env_accepted(command):
    e = {"CNI_COMMAND": command, **{k: FULL[k] for k in REQUIRED[command]}}
    req = request.parse(e)
    assert req.command == command


@pytest.mark.parametrize("command", [c for c in REQUIRED if REQUIRED[c]])
@pytest.mark.parametrize("blank", [None, ""], ids=["unset", "empty"])
def test_all_missing_named_in_one_error(command, blank):
    e = env(command, **{k: blank for k in FULL})
    err = error(e)
    assert err.code == Code.INVALID_ENV == 4
    assert err.msg == f"required env variables [{','.join(REQUIRED[command])}] missing"


@pytest.mark.parametrize(
    "command,var",
    [(c, v) for c, vs in REQUIRED.items() for v in vs],
)
def test_each_required_var(command, var):
    err = error(env(command, **{var: None}))
    assert err.code == Code.INVALID_ENV
    assert err.msg == f"required env variables [{var}] missing"


@pytest.mark.parametrize("command", ["DEL", "GC", "STATUS", "VERSION"])
def test_netns_optional(command):
    assert request.parse(env(command, CNI_NETNS=None)).netns == ""


@pytest.mark.parametrize("command", ["add", "Add", "GET", "", " ADD", "ADD\n", "VERSIONS", "DELETE"])
def test_unknown_command(command):
    err = error(env(command))
    assert err.code == Code.INVALID_ENV
    assert "unknown CNI_COMMAND" in err.msg


@pytest.mark.parametrize(
    "junk",
    [
        {"CNI_CONTAINERID": "-bad id"},
        {"CNI_IFNAME": "x" * 40},
        {"CNI_IFNAME": "a/b"},
        {"CNI_ARGS": "FOO=1"},
        {"CNI_ARGS": "garbage"},
    ],
)
def test_version_ignores_the_rest_of_the_env(junk):
    req = request.parse({"CNI_COMMAND": "VERSION", **junk})
    assert req.command == "VERSION"
    assert req.args == {}


def test_path_empty_elements_dropped():
    assert request.parse(env("ADD", CNI_PATH="::/a::/b:")).path == ("/a", "/b")


# ------------------------------------------------------------ containerID
@pytest.mark.parametrize(
    "cid",
    ["a", "0", "abc", "ABC-def_1.2", "x" * 256, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "a.", "a-", "a_"],
)
def test_container_id_valid(cid):
    assert request.parse(env("ADD", CNI_CONTAINERID=cid)).container_id == cid


@pytest.mark.parametrize(
    "cid",
    ["-a", ".a", "_a", "a b", "a/b", "a:b", "a\n", "\na", "a;b", "ä", "a\x00", "a%", "a+b", "a@b", " a"],
)
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_container_id_invalid(cid, command):
    err = error(env(command, CNI_CONTAINERID=cid))
    assert err.code == Code.INVALID_ENV
    assert err.msg == "invalid characters in containerID"
    assert err.details == cid


# ------------------------------------------------------------------ ifname
@pytest.mark.parametrize(
    "name",
    ["e", "eth0", "net1", "x" * 15, "ä" * 7 + "x", "eth0.100", "a-b_c", "é"],
)
def test_ifname_valid(name):
    assert request.parse(env("ADD", CNI_IFNAME=name)).ifname == name


@pytest.mark.parametrize(
    "name,fragment",
    [
        ("x" * 16, "too long"),
        ("x" * 100, "too long"),
        ("ä" * 8, "too long"),  # 8 characters, 16 bytes
        ("ä" * 7 + "xx", "too long"),  # 9 characters, 16 bytes
        ("€" * 5 + "x", "too long"),  # 6 characters, 16 bytes
        ("😀" * 4, "too long"),  # 4 characters, 16 bytes
        (".", ". or .."),
        ("..", ". or .."),
        ("a/b", "/ or :"),
        ("/", "/ or :"),
        ("a:b", "/ or :"),
        ("eth0:1", "/ or :"),
        ("a b", "whitespace"),
        ("a\tb", "whitespace"),
        ("eth0\n", "whitespace"),
        ("\reth0", "whitespace"),
        ("a\u00a0b", "whitespace"),
        ("a\u2003b", "whitespace"),
        (" ", "whitespace"),
    ],
)
@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
def test_ifname_invalid(name, fragment, command):
    err = error(env(command, CNI_IFNAME=name))
    assert err.code == Code.INVALID_ENV
    assert fragment in err.msg


def test_ifname_too_long_details():
    err = error(env("ADD", CNI_IFNAME="x" * 16))
    assert err.msg == "interface name is too long"
    assert err.details == "interface name should be less than 16 characters"


@pytest.mark.parametrize("command", ["GC", "STATUS", "VERSION"])
def test_ifname_not_checked_where_unused(command):
    assert request.parse(env(command, CNI_IFNAME="x" * 40)).command == command


@pytest.mark.parametrize("name", ["", None])
def test_ifname_missing_is_missing_env(name):
    err = error(env("ADD", CNI_IFNAME=name))
    assert err.code == Code.INVALID_ENV
    assert "CNI_IFNAME" in err.msg


# ---------------------------------------------------------------- CNI_ARGS
@pytest.mark.parametrize(
    "text,expected",
    [
        ("", {}),
        ("MAC=0a:58:0a:00:00:01", {"MAC": "0a:58:0a:00:00:01"}),
        ("IP=10.0.0.5", {"IP": "10.0.0.5"}),
        ("IP=10.0.0.5,fd00::5", {"IP": "10.0.0.5,fd00::5"}),
        (
            "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=1-2-3",
            {"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "web-0", "K8S_POD_INFRA_CONTAINER_ID": "abc", "K8S_POD_UID": "1-2-3"},
        ),
        ("MAC=", {"MAC": ""}),
        ("IgnoreUnknown=1;FOO=bar", {"IgnoreUnknown": "1", "FOO": "bar"}),
        ("FOO=bar;IgnoreUnknown=1", {"IgnoreUnknown": "1", "FOO": "bar"}),
        ("IgnoreUnknown=true;FOO=bar;BAZ=", {"IgnoreUnknown": "true", "FOO": "bar", "BAZ": ""}),
        ("IgnoreUnknown=TRUE;FOO=bar", {"IgnoreUnknown": "TRUE", "FOO": "bar"}),
        ("IgnoreUnknown=True;FOO=bar", {"IgnoreUnknown": "True", "FOO": "bar"}),
        ("IgnoreUnknown=0", {"IgnoreUnknown": "0"}),
        ("IgnoreUnknown=false;MAC=0a:58:0a:00:00:01", {"IgnoreUnknown": "false", "MAC": "0a:58:0a:00:00:01"}),
    ],
)
def test_args_parsed(text, expected):
    assert request.parse_args(text) == expected
    assert request.parse(env("ADD", CNI_ARGS=text)).args == expected


@pytest.mark.parametrize("text", ["FOO", "=bar", "MAC=x;;IP=y", "MAC=x;", ";MAC=x", ";", "a=b;c"])
def test_args_invalid_pair(text):
    with pytest.raises(CNIError) as info:
        request.parse_args(text)
    assert info.value.code == Code.INVALID_ENV
    assert "invalid pair" in info.value.msg


@pytest.mark.parametrize(
    "text,unknown",
    [
        ("FOO=bar", ["FOO"]),
        ("MAC=0a:58:0a:00:00:01;FOO=bar", ["FOO"]),
        ("ZED=1;ALPHA=2", ["ALPHA", "ZED"]),
        ("mac=0a:58:0a:00:00:01", ["mac"]),  # keys are case-sensitive
        ("IgnoreUnknown=0;FOO=bar", ["FOO"]),
        ("IgnoreUnknown=false;FOO=bar", ["FOO"]),
        ("IgnoreUnknown=yes;FOO=bar", ["FOO"]),
        ("IgnoreUnknown=;FOO=bar", ["FOO"]),
    ],
)
def test_args_unknown_keys(text, unknown):
    with pytest.raises(CNIError) as info:
        request.parse_args(text)
    err = info.value
    assert err.code == Code.INVALID_ENV
    for key in unknown:
        assert repr(key) in err.msg
    assert "IgnoreUnknown" in err.details
    # the same through parse(), for a command that needs CNI_ARGS
    assert error(env("ADD", CNI_ARGS=text)).code == Code.INVALID_ENV


def test_args_last_duplicate_wins():
    assert request.parse_args("MAC=0a:00:00:00:00:01;MAC=0a:00:00:00:00:02") == {"MAC": "0a:00:00:00:00:02"}


def test_args_value_may_contain_equals():
    # the value is everything after the first "=" (base64 padding, URLs)
    assert request.parse_args("IgnoreUnknown=1;TOKEN=YQ==") == {"IgnoreUnknown": "1", "TOKEN": "YQ=="}


def test_env_kept_verbatim_for_delegates():
    e = env("ADD", CNI_ARGS="IgnoreUnknown=1;X=y", EXTRA="1")
    req = request.parse(e)
    assert dict(req.env) == e
    assert req.env is not e  # a copy: later changes to the caller's mapping do not leak in


@pytest.mark.parametrize("command", ["DEL", "GC", "STATUS"])
def test_cni_args_are_not_a_reason_to_fail_cleanup(command):
    from nsveth import request

    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "c1",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
        "CNI_ARGS": "UNKNOWN=1;garbage",
    }
    assert request.parse(env).args == {}
