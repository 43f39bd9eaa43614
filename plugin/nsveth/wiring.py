"""The host-side wiring of a pod: what each mode implements, and the one place modes are registered.

A wiring is a module (ptp: a routed veth; bridge: a veth as a bridge port)
with the functions of `Wiring`; mypy checks each registered module against
it. A new wiring (say macvlan) is its own module, its mode in schema.json,
and one branch in `of`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .attachment import Attachment, Links
    from .links import Link
    from .request import Request
    from .result import Interface, IPConfig, Result


class Wiring(Protocol):
    """The steps of ADD, DEL and CHECK that differ by mode, in the order ADD runs them.

    Each takes the attachment as the steps before it left it (frozen) and
    returns what it learned, if anything: the command rebinds the attachment.
    """

    @property
    def POD_KIND(self) -> str:  # a module constant in each wiring
        """The link kind of the pod interface it makes (CHECK compares it)."""

    def preflight(self, att: Attachment) -> None:
        """Refuse before anything is written or allocated (e.g. a MAC already in use)."""

    def prepare(self, att: Attachment) -> Result:
        """The lease as this wiring uses it (completed or checked) before anything uses it."""

    def create(self, att: Attachment) -> Links:
        """Make the links: the pod interface in the pod netns and its host side."""

    def rollback(self, att: Attachment) -> bool:
        """ADD's undo of create, armed before create runs: remove whatever of the links exists
        (nothing is success); whether anything was there."""

    def setup_host(self, att: Attachment) -> Links:
        """Configure the host side (addresses, routes, forwarding, bridge port); the links as they are then."""

    def setup_pod(self, att: Attachment) -> None:
        """Configure the pod interface: addresses, link up, the lease's routes."""

    def withdraw(self, att: Attachment, gone: Sequence[IPConfig]) -> None:
        """Take back what setup_host made for pod addresses the kernel removed after it
        (the config's sysctls disabled IPv6 on the pod interface)."""

    def settle(self, att: Attachment) -> None:
        """Wait until the pod's frames leave the host side (before the announcement)."""

    def interfaces(self, att: Attachment) -> tuple[tuple[Interface, ...], int]:
        """The result's interfaces and the index of the pod interface among them."""

    def observe(self, att: Attachment, pod: Link, pod_index: int) -> list[str]:
        """CHECK: what differs on the host side from what create and setup_host made (att.lease
        is prevResult, `pod` the pod interface as the kernel shows it, `pod_index` its index there)."""

    def delete(self, req: Request, record: dict[str, Any]) -> None:
        """DEL: remove the links (best effort: what is gone is success)."""


def of(mode: str) -> Wiring:
    """The wiring of `mode` (bridge's import is start-up time only configs that use it pay)."""
    if mode == "bridge":
        from . import bridge

        return bridge
    from . import ptp

    return ptp
