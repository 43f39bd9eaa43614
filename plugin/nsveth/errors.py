"""The one error type nsveth raises, carrying its CNI error code; kernel failures turned into it."""

from __future__ import annotations

import enum
import errno
import json
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Code(enum.IntEnum):
    """CNI well-known error codes (SPEC section "Error"), then nsveth's own (>= 100)."""

    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENV = 4
    IO_FAILURE = 5
    DECODE_FAILURE = 6
    INVALID_CONFIG = 7
    TRY_AGAIN = 11
    NOT_AVAILABLE = 50
    LIMITED_CONNECTIVITY = 51
    # nsveth-specific
    KERNEL = 100  # a netlink or /proc/sys operation failed
    CHECK_FAILED = 101  # CHECK found state that differs from prevResult
    DELEGATE_FAILED = 102  # the IPAM plugin failed without a CNI error of its own
    INTERNAL = 999  # a bug: never raised on purpose


class CNIError(Exception):
    """A failure reported to the runtime as `{cniVersion, code, msg, details}`."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = int(code)
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> bytes:
        # details always present (possibly empty), so every error has the spec's four keys.
        body = {"cniVersion": cni_version, "code": self.code, "msg": self.msg, "details": self.details or ""}
        return json.dumps(body, indent=2).encode() + b"\n"

    def __repr__(self) -> str:
        return f"CNIError({self.code}, {self.msg!r}, {self.details!r})"


class NetlinkError(OSError):
    """A kernel error answer to a netlink request; `strerror` carries the extended ack text if any."""


def kernel(what: str, fn: Callable[..., T], *args: Any) -> T:
    """Run a kernel step, turning netlink/proc failures into a CNI error (code 100) naming the step."""
    try:
        return fn(*args)
    except NetlinkError as e:
        raise CNIError(Code.KERNEL, f"failed to {what}: {e.strerror}") from None
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise CNIError(Code.KERNEL, f"failed to {what}: {e.strerror} ({e.filename or ''})") from None
        raise CNIError(Code.KERNEL, f"failed to {what}: {e}") from None
