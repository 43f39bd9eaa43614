"""ADD, DEL, CHECK, GC and STATUS, each as one story over named helpers."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeGuard

from . import addresses, advertise, check, crashpoints, ipam, links, log, netns, procsys, result, routes, state, timing, wiring
from .attachment import Attachment, host_ifname
from .config import NetConf
from .errors import CNIError, Code, kernel
from .request import Request

# masq and sysctl are imported where a config needs them: every pod operation
# is a fresh process, and most configs have neither masquerade nor sysctls
# (the import costs are in bench/README.md).
if TYPE_CHECKING:
    from . import sysctl


def run(req: Request, conf: NetConf) -> dict[str, Any] | None:
    handler = {"ADD": add, "DEL": delete, "CHECK": check_, "GC": gc, "STATUS": status}[req.command]
    return handler(req, conf)


# --------------------------------------------------------------------- ADD
def add(req: Request, conf: NetConf) -> dict[str, Any]:
    for warning in conf.warnings:
        log.get().warning("%s", warning)
    sysctls = _sysctl_plan(req, conf)  # a bad key fails here: no IPAM call, nothing written
    wired = wiring.of(conf.mode)
    with netns.opened_pod(req.netns) as (pod_fd, host_sock, pod_sock):
        att = Attachment(req, conf, host_sock, pod_sock, pod_fd, host_ifname(req.container_id, req.ifname))
        _refuse_taken(att, sysctls, wired)
        crashpoints.step(req, "open netns")
        with state.lock(conf.runtime_dir, conf.name, exclusive=False), contextlib.ExitStack() as undo:
            _take_over_earlier(att)
            _record(att, phase="adding")
            undo.callback(_quietly, state.remove, conf.runtime_dir, conf.name, req.container_id, req.ifname)
            crashpoints.step(req, "state adding")
            # Armed before the call: a delegate that allocated and then answered
            # something unusable (no IPs, a malformed result) still holds a lease.
            undo.callback(_quietly, ipam.delete, conf, req)
            att = replace(att, lease=ipam.add(conf, req))
            crashpoints.step(req, "ipam")
            att = replace(att, lease=kernel("look at the host side", wired.prepare, att))
            # Armed first: the links exist as soon as the kernel has made them.
            undo.callback(_quietly, wired.rollback, att)
            att = replace(att, links=wired.create(att))
            crashpoints.step(req, "sysctl host")
            att = replace(att, links=kernel("configure the host side", wired.setup_host, att))
            _masquerade(att, undo)
            crashpoints.step(req, "host side")
            _set_pod_ipv6(att)
            crashpoints.step(req, "sysctl pod")
            kernel(f"configure {req.ifname} in the pod", wired.setup_pod, att)
            crashpoints.step(req, "pod side")
            att = replace(att, sysctl_originals=_apply_sysctls(att, sysctls, undo))
            crashpoints.step(req, "sysctl config")
            att = replace(att, lease=addresses.drop_vanished_ipv6(att, wired.withdraw))
            kernel(f"wait for {att.host_name} to forward", wired.settle, att)
            crashpoints.step(req, "settle")
            # Last, with sysctls applied, vanished addresses dropped and the port forwarding.
            sender = _announce(att)
            undo.callback(_quietly, advertise.cancel, {"advertiser": sender}, _sender_lock(req, conf))
            crashpoints.step(req, "announce")
            _record(att, phase="added", advertiser=sender)
            undo.pop_all()
            # The detached sender is between its rounds here (tests kill ADD at this point).
            crashpoints.step(req, "state added")
        return result.to_wire(_result(att), conf.cni_version)


def _refuse_taken(att: Attachment, sysctls: tuple[sysctl.Sysctl, ...], wired: wiring.Wiring) -> None:
    """Refusals before anything is written or allocated: CNI_IFNAME taken (by other than a killed ADD
    of this attachment), a sysctl the pod netns lacks, what the wiring refuses."""
    req, conf = att.req, att.conf
    if links.get(att.pod_socket, name=req.ifname) is not None and not _interrupted(
        state.read(conf.runtime_dir, conf.name, req.container_id, req.ifname)
    ):
        raise CNIError(Code.INVALID_ENV, f'interface "{req.ifname}" already exists in netns {req.netns}')
    if sysctls:
        from . import sysctl

        with netns.entered(att.pod_netns_fd):
            sysctl.probe(sysctls, req.ifname)
    wired.preflight(att)


def _take_over_earlier(att: Attachment) -> None:
    """An earlier ADD of this attachment that was killed, with no DEL since, left leftovers (lease,
    veth, rules): they are released, not an error. Otherwise its announcement sender, if still
    running, is stopped: it would announce a dead MAC."""
    req, conf = att.req, att.conf
    earlier = state.read(conf.runtime_dir, conf.name, req.container_id, req.ifname)
    if _interrupted(earlier):
        log.get().info("an earlier ADD of this attachment was interrupted: releasing what it left")
        _restore_recorded_sysctls(req, earlier)
        # With the IPAM config that ADD had, as DEL does: the conflist may have changed since.
        _release(req, _recorded_conf(req, conf.runtime_dir, conf.name, earlier) or conf, earlier)
    else:
        advertise.cancel(earlier, _sender_lock(req, conf))


def _interrupted(record: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    """Whether an attachment's record says an ADD of it was killed mid-way (what exists is a leftover)."""
    return record is not None and record.get("phase") == "adding"


def _masq_backend(req: Request, conf: NetConf) -> str:
    from . import masq

    return masq.backend(conf.ip_masq_backend, path=req.tool_path)


def _masquerade(att: Attachment, undo: contextlib.ExitStack) -> None:
    """Source NAT of the pod's addresses (ipMasq), removed again by `undo` if ADD fails later."""
    req, conf = att.req, att.conf
    if not conf.ip_masq:
        return
    from . import masq

    ips = [ip.address for ip in att.leased.ips]
    backend = _masq_backend(req, conf)
    # Armed first: iptables builds the rules in several calls, and one failing midway leaves the others.
    undo.callback(_quietly, masq.teardown, backend, conf.name, req.container_id, req.ifname, path=req.tool_path)
    masq.setup(backend, conf.name, req.container_id, req.ifname, ips, conf.non_masquerade, path=req.tool_path)


def _set_pod_ipv6(att: Attachment) -> None:
    wants_v6 = any(ip.address.version == 6 for ip in att.leased.ips)
    with netns.entered(att.pod_netns_fd):
        kernel(f"set IPv6 on {att.req.ifname}", procsys.set_ipv6, att.req.ifname, wants_v6)


def _sysctl_plan(req: Request, conf: NetConf) -> tuple[sysctl.Sysctl, ...]:
    """The configured sysctls, every pure rule and the admin allowlist checked (code 7 otherwise)."""
    if not conf.sysctl and not conf.args_sysctl and conf.sysctl_allowlist is None:
        return ()
    # Imported only here and where a plan or a record needs it: start-up time
    # the common config (no sysctls) does not pay.
    from . import sysctl

    allowlist = sysctl.load_allowlist(conf.sysctl_allowlist)
    return sysctl.plan(conf.sysctl, conf.args_sysctl, req.ifname, allowlist)


def _apply_sysctls(
    att: Attachment, sysctls: tuple[sysctl.Sysctl, ...], undo: contextlib.ExitStack
) -> tuple[sysctl.Original, ...]:
    """Write the sysctls in the pod netns; the values they replaced. Those are
    in the state record before the first write, so DEL restores them even after
    a kill between two writes; a failed write (or any later step) restores them
    through `undo`."""
    if not sysctls:
        return ()
    from . import sysctl

    with netns.entered(att.pod_netns_fd):
        originals = tuple(sysctl.pending(sysctls))
    if originals:
        _record(replace(att, sysctl_originals=originals), phase="adding")
    undo.callback(_quietly, _restore_sysctls, att.pod_netns_fd, originals)
    with netns.entered(att.pod_netns_fd):
        # The same originals, now with the form the kernel shows (CHECK accepts it).
        return tuple(sysctl.apply(sysctls))


def _restore_sysctls(pod_fd: int, originals: Sequence[sysctl.Original]) -> None:
    from . import sysctl

    with netns.entered(pod_fd):
        failed = sysctl.restore(originals)
    if failed:
        log.get().warning("could not restore sysctl(s): %s", "; ".join(failed))


def _result(att: Attachment) -> result.Result:
    lease = att.leased
    interfaces, pod_index = wiring.of(att.conf.mode).interfaces(att)
    ips = tuple(result.IPConfig(ip.address, ip.gateway, interface=pod_index) for ip in lease.ips)
    dns = att.conf.dns if not att.conf.dns.is_empty() else lease.dns
    return result.Result(interfaces, ips, lease.routes, dns)


def _announce(att: Attachment) -> dict[str, int] | None:
    """Unsolicited ARP / NA for every address, last, once the pod interface is
    complete; returns the detached sender of the later rounds, if any."""
    assert att.links is not None and att.lease is not None and att.pod_fd is not None
    plan = advertise.Plan.of(
        att.links.pod.index,
        att.links.pod.mac,
        (ip.address.ip for ip in att.lease.ips),
        att.conf.advertise.count,
        att.conf.advertise.interval_ms,
    )
    return advertise.announce(att.pod_fd, plan, _sender_lock(att.req, att.conf))


def _sender_lock(req: Request, conf: NetConf) -> str:
    return state.sender_lock(conf.runtime_dir, conf.name, req.container_id, req.ifname)


def _record(att: Attachment, phase: str, advertiser: dict[str, int] | None = None) -> None:
    req, conf = att.req, att.conf
    state.write(
        conf.runtime_dir,
        conf.name,
        req.container_id,
        req.ifname,
        {
            "version": 1,
            "phase": phase,
            "advertiser": advertiser,  # pid + start time of the announcement sender, for DEL/GC to stop it
            "network": conf.name,
            "containerID": req.container_id,
            "ifname": req.ifname,
            "netns": req.netns,
            # Who the attachment is for, when the runtime said (kubelet's CNI_ARGS): for `nsveth inspect`.
            "podNamespace": req.args.get("K8S_POD_NAMESPACE") or None,
            "podName": req.args.get("K8S_POD_NAME") or None,
            "addresses": [str(ip.address) for ip in att.lease.ips] if att.lease else [],
            # DEL and CHECK act inside CNI_NETNS only when it is still this namespace.
            "netnsIdentity": netns.identity(att.pod_netns_fd),
            "hostIfname": att.host_name,
            "mode": conf.mode,
            "masq": _masq_backend(req, conf) if conf.ip_masq else None,
            "config": conf.raw.decode(),
            "sysctlOriginals": [o.to_json() for o in att.sysctl_originals],
        },
    )


# --------------------------------------------------------------------- DEL
def delete(req: Request, conf: NetConf) -> None:
    renamed_failure = _release_under_other_names(req, conf)
    with contextlib.ExitStack() as locked:
        record: dict[str, Any] = {}
        try:
            locked.enter_context(state.lock(conf.runtime_dir, conf.name, exclusive=False))
            record = state.read(conf.runtime_dir, conf.name, req.container_id, req.ifname) or {}
        except CNIError as e:
            # DEL must release the lease and links even when the runtime dir or
            # the record is unusable; its records are then not trusted.
            log.get().warning("%s: deleting by name, without the state record", e.msg)
        timing.mark("lock")
        _restore_recorded_sysctls(req, record)
        timing.mark("sysctl restore")
        # The config DEL brings may not be the one ADD had (a conflist changed
        # under a running pod): the lease is the recorded IPAM config's.
        _release(req, _recorded_conf(req, conf.runtime_dir, conf.name, record) or conf, record)
    if renamed_failure is not None:
        raise renamed_failure


def _release_under_other_names(req: Request, conf: NetConf) -> CNIError | None:
    """Undo this attachment's record under another network name, as that network's DEL would.

    The host veth name depends only on containerID and ifname, so no two
    networks can hold an attachment of the same pair at once: a record under
    another name is this attachment, added before the network was renamed
    (CRI runtimes DEL with the conflist of DEL time). Returns the failure, if
    any, so this network's own DEL still runs first.
    """
    failure = None
    for network in state.networks_of(conf.runtime_dir, req.container_id, req.ifname):
        if network == conf.name:
            continue
        with contextlib.ExitStack() as locked:
            try:
                locked.enter_context(state.lock(conf.runtime_dir, network, exclusive=False))
                record = state.read(conf.runtime_dir, network, req.container_id, req.ifname) or {}
            except CNIError as e:
                log.get().warning("%s: the record under network %s is not trusted, left alone", e.msg, network)
                continue
            added_with = _recorded_conf(req, conf.runtime_dir, network, record)
            if added_with is None:
                continue  # released meanwhile, or no config to release it with: that network's GC
            log.get().info(
                "%s/%s was added as network %s: releasing it there first", req.container_id, req.ifname, network
            )
            _restore_recorded_sysctls(req, record)
            try:
                _release(req, added_with, record)
            except CNIError as e:
                failure = failure or e
    return failure


def _recorded_conf(req: Request, runtime_dir: str, network: str, record: dict[str, Any]) -> NetConf | None:
    """The config the attachment's ADD had, from its record; None without a usable one."""
    from . import config as config_mod
    from . import validation_cache

    raw = record.get("config")
    if not isinstance(raw, str):
        return None
    try:
        conf = config_mod.load(raw.encode(), req, validation_cache.validate)
    except CNIError as e:
        log.get().warning(
            "record of %s/%s in network %s has an unusable config: %s", req.container_id, req.ifname, network, e.msg
        )
        return None
    # Only a record that describes itself: its release removes the record by these names.
    return conf if conf.name == network and conf.runtime_dir == runtime_dir else None


def _recorded_originals(record: dict[str, Any]) -> list[sysctl.Original]:
    entries = record.get("sysctlOriginals")
    if not isinstance(entries, list) or not entries:
        return []
    from . import sysctl

    return [o for o in map(sysctl.Original.from_json, entries) if o]


def _restore_recorded_sysctls(req: Request, record: dict[str, Any]) -> None:
    """Put back the sysctl values ADD replaced, when the pod netns is still there (best effort:
    a pod being torn down must not be kept by a value that cannot be restored)."""
    originals = _recorded_originals(record)
    if not originals or not req.netns:
        return
    # Only into the namespace ADD changed: the path may name another one by now.
    fd = netns.open_recorded(req.netns, record, "sysctl originals not restored")
    if fd is None:
        return  # the pod netns is gone (its sysctls with it), or the path names another one
    try:
        _restore_sysctls(fd, originals)
    except OSError as e:
        log.get().warning("could not restore sysctls in %s: %s", req.netns, e)
    finally:
        os.close(fd)


def _release(req: Request, conf: NetConf, record: dict[str, Any]) -> None:
    """Remove the host side and the pod interface, then always release the lease.

    Best effort by design: a missing netns, interface or lease is success; a
    real failure is reported after every step has been tried.
    """
    # Stop the announcement sender first: the address may be handed out again right after.
    advertise.cancel(record, _sender_lock(req, conf))
    failures: list[CNIError] = []
    try:
        _unmasquerade(req, conf, record)
    except CNIError as e:
        failures.append(e)
    try:
        wiring.of(conf.mode).delete(req, record)
    except CNIError as e:
        failures.append(e)
    timing.mark("links")
    try:
        ipam.delete(conf, req)
    except CNIError as e:
        failures.append(e)
    timing.mark("ipam")
    if failures:
        raise failures[0]
    state.remove(conf.runtime_dir, conf.name, req.container_id, req.ifname)
    timing.mark("state removed")


def _unmasquerade(req: Request, conf: NetConf, record: dict[str, Any]) -> None:
    """Masquerade rules go by the attachment's names alone: no netns or address needed.
    The backend ADD used is in the record; without one, the config's (if it masquerades)."""
    kind = record.get("masq")
    if kind not in ("nftables", "iptables"):
        if not conf.ip_masq:
            return
        try:
            kind = _masq_backend(req, conf)
        except CNIError:
            return  # neither nft nor iptables: there can be no rules to remove
    from . import masq

    masq.teardown(kind, conf.name, req.container_id, req.ifname, path=req.tool_path)


# ------------------------------------------------------------------- CHECK
def check_(req: Request, conf: NetConf) -> None:
    prev = conf.prev_result
    if prev is None:
        raise CNIError(Code.INVALID_CONFIG, "CHECK needs prevResult in the network config")
    pod_index = check.pod_interface_index(prev, req.ifname, req.netns)
    sysctls = _sysctl_plan(req, conf)
    wired = wiring.of(conf.mode)
    with netns.opened_pod(req.netns, missing_code=Code.CHECK_FAILED) as (pod_fd, host_sock, pod_sock):
        _refuse_other_netns(req, conf, pod_fd)
        att = Attachment(req, conf, host_sock, pod_sock, pod_fd, host_ifname(req.container_id, req.ifname), lease=prev)
        pod = links.get(pod_sock, name=req.ifname)
        problems = check.compare(prev, pod_index, conf, _observe(att, pod), wired.POD_KIND)
        if pod is not None:
            problems += wired.observe(att, pod, pod_index)
        if sysctls:
            from . import sysctl

            with netns.entered(pod_fd):
                seen = sysctl.read(sysctls)
            problems += sysctl.compare(sysctls, seen, _applied_sysctls(req, conf))
    if conf.ip_masq:
        from . import masq

        ips = [ip.address for ip in prev.ips]
        problems += masq.missing(_masq_backend(req, conf), conf.name, req.container_id, req.ifname, ips, path=req.tool_path)
    ipam.check(conf, req)
    if problems:
        raise CNIError(Code.CHECK_FAILED, "; ".join(problems))


def _refuse_other_netns(req: Request, conf: NetConf, pod_fd: int) -> None:
    """CHECK against a namespace other than the one ADD configured fails (code 101), naming both.
    A record without an identity (written before nsveth recorded one) is not held against the pod."""
    record = state.read(conf.runtime_dir, conf.name, req.container_id, req.ifname) or {}
    if "netnsIdentity" not in record:
        return
    problem = netns.mismatch(pod_fd, record["netnsIdentity"])
    if problem is not None:
        raise CNIError(Code.CHECK_FAILED, f"CNI_NETNS {req.netns} is not the netns ADD configured: {problem}")


def _applied_sysctls(req: Request, conf: NetConf) -> dict[tuple[str, ...], str]:
    """Values the kernel normalised when ADD wrote them (from the state record)."""
    record = state.read(conf.runtime_dir, conf.name, req.container_id, req.ifname) or {}
    return {o.segments: o.applied for o in _recorded_originals(record) if o.applied is not None}


def _observe(att: Attachment, pod: links.Link | None) -> check.Observed:
    """What the kernel shows of the attachment in the pod netns."""
    pod_addrs = addresses.on_link(att.pod_socket, pod.index) if pod else []
    pod_routes = routes.dump(att.pod_socket) if pod else []
    return check.Observed(pod, tuple(a for a, _ in pod_addrs), tuple(pod_routes))


# ---------------------------------------------------------------------- GC
def gc(req: Request, conf: NetConf) -> None:
    """Release every attachment of this network that the runtime no longer lists."""
    if conf.valid_attachments is None:
        # Without the list every pod of the network would be "stale": refuse
        # rather than tear down a node's pods on a hand-written request.
        raise CNIError(
            Code.INVALID_CONFIG,
            'GC needs "cni.dev/valid-attachments" (an empty list, or null, releases every attachment of the network)',
        )
    valid = set(conf.valid_attachments)
    failures = []
    with state.lock(conf.runtime_dir, conf.name, exclusive=True) as started:
        for name in state.sweep_temporaries(conf.runtime_dir, conf.name):
            log.get().info("GC: removed %s, left by a writer that was killed", name)
        for container_id, ifname in state.attachments(conf.runtime_dir, conf.name):
            if (container_id, ifname) in valid:
                continue
            written = state.written_at(conf.runtime_dir, conf.name, container_id, ifname)
            if written is not None and written >= started:
                # Added while this GC waited for the lock: the runtime's list predates it.
                log.get().info("GC: %s/%s was added after GC started; left for the next GC", container_id, ifname)
                continue
            log.get().info("GC: releasing stale attachment %s/%s", container_id, ifname)
            try:
                release_recorded(req, conf, container_id, ifname)
            except CNIError as e:
                failures.append(f"{container_id}/{ifname}: {e.msg}")
        try:
            _sweep_masquerade(req, conf, valid)
        except CNIError as e:
            failures.append(f"masquerade rules: {e.msg}")
    try:
        ipam.gc(conf, req)
    except CNIError as e:
        failures.append(f"IPAM GC: {e.msg}")
    if failures:
        raise CNIError(Code.TRY_AGAIN, "GC could not release everything: " + "; ".join(failures))


def _sweep_masquerade(req: Request, conf: NetConf, valid: set[tuple[str, str]]) -> None:
    """nftables chains of this network that no valid or recorded attachment owns (e.g. a lost record)."""
    from . import masq

    keep = valid | set(state.attachments(conf.runtime_dir, conf.name))
    stale = masq.stale_nft_chains(conf.name, keep, path=req.tool_path)
    if stale:
        log.get().info("GC: removing masquerade chains %s", ", ".join(stale))
        masq.remove_nft_chains(stale, path=req.tool_path)


def release_recorded(req: Request, conf: NetConf, container_id: str, ifname: str) -> None:
    """DEL of an attachment, from its state record (the config its ADD had)."""
    try:
        record = state.read(conf.runtime_dir, conf.name, container_id, ifname) or {}
    except CNIError as e:
        log.get().warning("GC: %s: releasing %s/%s by name", e.msg, container_id, ifname)
        record = {}
    env = dict(req.env)
    # No netns: GC never enters one. The recorded path of a stale attachment
    # may name anything by now; the host side, rules, lease and record are
    # found by name, and the pod end dies with its host peer.
    env.update(CNI_COMMAND="DEL", CNI_CONTAINERID=container_id, CNI_IFNAME=ifname, CNI_NETNS="")
    stale_req = Request("DEL", container_id, "", ifname, {}, req.path, env)
    _release(stale_req, _recorded_conf(stale_req, conf.runtime_dir, conf.name, record) or conf, record)
    state.remove(conf.runtime_dir, conf.name, container_id, ifname)


# ------------------------------------------------------------------ STATUS
def status(req: Request, conf: NetConf) -> None:
    ipam.status(conf, req)


# ------------------------------------------------------------------ shared
def _quietly(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Undo steps never raise: the runtime must see the original error, not the rollback's."""
    try:
        fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - logged; the original error wins
        log.get().warning("rollback step %s failed: %s", getattr(fn, "__qualname__", fn), e)
