"""CNI spec versions nsveth speaks, and the gates each command puts on them."""

from __future__ import annotations

from .errors import CNIError, Code

SUPPORTED = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
CURRENT = "1.1.0"

# Oldest config version that allows each command (the reference skel's gates).
_MINIMUM = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}


def key(version: str) -> tuple[int, ...]:
    """Sortable form of a dotted version; raises ValueError on anything else."""
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"invalid version {version!r}")
    return tuple(int(p) for p in parts)


def at_least(version: str, minimum: str) -> bool:
    return key(version) >= key(minimum)


def require_supported(version: str) -> None:
    if version not in SUPPORTED:
        raise CNIError(
            Code.INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            f'config is "{version}", plugin supports {list(SUPPORTED)}',
        )


def require_command(command: str, version: str) -> None:
    minimum = _MINIMUM.get(command)
    if minimum is not None and not at_least(version, minimum):
        raise CNIError(
            Code.INCOMPATIBLE_VERSION,
            f"config version does not allow {command}",
            f'config is "{version}", {command} needs {minimum} or newer',
        )


def highest_common(theirs: list[str], ceiling: str) -> str | None:
    """The newest version both sides speak that is not newer than `ceiling`."""
    common = [v for v in SUPPORTED if v in theirs and key(v) <= key(ceiling)]
    return max(common, key=key) if common else None


def report() -> dict[str, object]:
    return {"cniVersion": CURRENT, "supportedVersions": list(SUPPORTED)}
