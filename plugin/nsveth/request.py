"""CNI_* environment variables, read once into a validated `Request`.

Rules follow the reference library's skel: which variables each command
needs (all missing ones named in one error), the container ID charset, the
interface name limits, and CNI_ARGS `K=V;K=V` parsing with IgnoreUnknown.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from .errors import CNIError, Code

COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")

_REQUIRED = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "GC": ("CNI_PATH",),
    "STATUS": ("CNI_PATH",),
    "VERSION": (),
}

_CONTAINER_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
_IFNAME_FORBIDDEN = re.compile(r"[/:\s]")
IFNAME_MAX_BYTES = 15

# CNI_ARGS keys nsveth understands or knows to belong to its delegates and
# to the runtimes that set them; any other key needs IgnoreUnknown.
_KNOWN_ARGS = frozenset(
    {
        "IgnoreUnknown",
        "MAC",
        "IP",
        "K8S_POD_NAMESPACE",
        "K8S_POD_NAME",
        "K8S_POD_INFRA_CONTAINER_ID",
        "K8S_POD_UID",
    }
)


@dataclasses.dataclass(frozen=True)
class Request:
    """The validated CNI_* environment of one command."""

    command: str
    container_id: str
    netns: str
    ifname: str
    args: Mapping[str, str]
    path: tuple[str, ...]
    env: Mapping[str, str]  # passed on verbatim to delegated plugins

    @property
    def tool_path(self) -> str:
        """PATH of the runtime's environment: where the tools the plugin runs (nft, iptables) are found."""
        return self.env.get("PATH", "")


def parse(env: Mapping[str, str]) -> Request:
    """Validate the environment for `env["CNI_COMMAND"]` (which must be set)."""
    command = env["CNI_COMMAND"]
    if command not in COMMANDS:
        raise CNIError(Code.INVALID_ENV, f"unknown CNI_COMMAND: {command}")
    if command == "VERSION":
        # VERSION needs nothing else and must answer whatever the rest holds (as skel does).
        return Request(command, "", "", "", {}, (), dict(env))
    missing = [v for v in _REQUIRED[command] if not env.get(v)]
    if missing:
        raise CNIError(Code.INVALID_ENV, f"required env variables [{','.join(missing)}] missing")
    container_id = env.get("CNI_CONTAINERID", "")
    if container_id and not _CONTAINER_ID.fullmatch(container_id):
        raise CNIError(Code.INVALID_ENV, "invalid characters in containerID", container_id)
    ifname = env.get("CNI_IFNAME", "")
    if command in ("ADD", "CHECK", "DEL"):
        validate_ifname(ifname)
    return Request(
        command=command,
        container_id=container_id,
        netns=env.get("CNI_NETNS", ""),
        ifname=ifname,
        # Only ADD and CHECK use CNI_ARGS; DEL must clean up whatever they hold.
        args=parse_args(env.get("CNI_ARGS", "")) if command in ("ADD", "CHECK") else {},
        path=tuple(p for p in env.get("CNI_PATH", "").split(":") if p),
        env=dict(env),
    )


def validate_ifname(name: str) -> None:
    if not name:
        raise CNIError(Code.INVALID_ENV, "interface name is empty")
    try:
        encoded = name.encode()
    except UnicodeEncodeError:  # bytes that are not UTF-8 reach os.environ as surrogate escapes
        raise CNIError(Code.INVALID_ENV, "interface name is not valid UTF-8", repr(name)) from None
    if len(encoded) > IFNAME_MAX_BYTES:
        raise CNIError(
            Code.INVALID_ENV,
            "interface name is too long",
            f"interface name should be less than {IFNAME_MAX_BYTES + 1} characters",
        )
    if name in (".", ".."):
        raise CNIError(Code.INVALID_ENV, "interface name is . or ..")
    if _IFNAME_FORBIDDEN.search(name):
        raise CNIError(Code.INVALID_ENV, "interface name contains / or : or whitespace characters")


def parse_args(text: str) -> dict[str, str]:
    """CNI_ARGS as a dict; unknown keys are an error unless IgnoreUnknown is set."""
    if not text:
        return {}
    pairs: dict[str, str] = {}
    for item in text.split(";"):
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise CNIError(Code.INVALID_ENV, f'CNI_ARGS: invalid pair "{item}"')
        pairs[k] = v
    if pairs.get("IgnoreUnknown", "").lower() not in ("1", "true"):
        unknown = sorted(k for k in pairs if k not in _KNOWN_ARGS)
        if unknown:
            raise CNIError(
                Code.INVALID_ENV,
                f"CNI_ARGS: unknown args {unknown}",
                "set IgnoreUnknown=1 to pass keys nsveth does not use",
            )
    return pairs
