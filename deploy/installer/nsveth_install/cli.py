"""Command line and the DaemonSet's watch loop: the only place that reads the
environment, the clock and signals. Everything below it takes explicit values."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
from pathlib import Path

from . import InstallError, __version__, conflist, fsatomic, install, kube

log = logging.getLogger("nsveth-install")

# Defaults match the container layout in deploy/Containerfile and the mounts in
# deploy/nsveth-daemonset.yaml; tests and manual runs pass their own paths.
DEFAULTS = {
    "bundle": "/opt/nsveth/bundle",
    "template": "/etc/nsveth-config/conflist.template.json",
    "allowlist_src": "/etc/nsveth-config/allowlist.conf",
    "cluster_cidrs_file": "/etc/nsveth-config/clusterCIDRs",
    "cni_bin_dir": "/host/opt/cni/bin",
    "cni_conf_dir": "/host/etc/cni/net.d",
    "allowlist_dest": "/host/etc/cni/nsveth/allowlist.conf",
    "conflist_name": "10-nsveth.conflist",
    "ready_file": "/run/nsveth-installer/ready",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nsveth-install",
        description="Install (or uninstall) the nsveth CNI plugin and its conflist on this node.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="do the work once and exit (default)")
    mode.add_argument("--watch", action="store_true",
                      help="keep the node in sync: redo the work every --interval seconds until SIGTERM")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--uninstall", action="store_true",
                        help="remove what nsveth-install installed (also: NSVETH_ACTION=uninstall)")
    action.add_argument("--rollback", action="store_true",
                        help="switch back to the previous installed version (a second rollback undoes it)")
    action.add_argument("--status", action="store_true",
                        help="print what is installed (JSON); exit 0 when installed and intact, else 1")
    p.add_argument("--no-conflist", action="store_true",
                   help="install the plugin (and allowlist) only; leave the conf dir alone (hand installs)")
    p.add_argument("--force", action="store_true",
                   help="overwrite (or on --uninstall: remove) files nsveth-install did not write")
    p.add_argument("--bundle", type=Path, default=Path(DEFAULTS["bundle"]), help="the dist/nsveth/ directory")
    p.add_argument("--template", type=Path, default=Path(DEFAULTS["template"]), help="conflist template (JSON)")
    p.add_argument("--cni-bin-dir", type=Path, default=Path(DEFAULTS["cni_bin_dir"]))
    p.add_argument("--cni-conf-dir", type=Path, default=Path(DEFAULTS["cni_conf_dir"]))
    p.add_argument("--conflist-name", default=DEFAULTS["conflist_name"])
    p.add_argument("--allowlist-src", type=Path, default=Path(DEFAULTS["allowlist_src"]),
                   help="sysctl allowlist to install; when the file is absent none is installed")
    p.add_argument("--allowlist-dest", default=DEFAULTS["allowlist_dest"],
                   help="where the node's nsveth reads the allowlist; empty: do not manage it")
    p.add_argument("--pod-cidr", action="append", default=[], metavar="CIDR",
                   help="the node's pod CIDR(s), comma-separated or repeated, one per IP family "
                        "(default: NSVETH_POD_CIDR, else the Node's spec.podCIDRs from the API)")
    p.add_argument("--cluster-cidr", action="append", default=[], metavar="CIDR",
                   help="the cluster's pod network(s), for @nsveth:clusterCIDRs, comma-separated or repeated "
                        "(default: NSVETH_CLUSTER_CIDR, else the --cluster-cidrs-file)")
    p.add_argument("--cluster-cidrs-file", type=Path, default=Path(DEFAULTS["cluster_cidrs_file"]),
                   help="file with the cluster CIDR(s), comma- or line-separated (the ConfigMap's clusterCIDRs key)")
    p.add_argument("--node-name", default=None, help="this node's name (default: NODE_NAME)")
    p.add_argument("--service-account-dir", type=Path, default=kube.SERVICE_ACCOUNT_DIR)
    p.add_argument("--ready-file", default=DEFAULTS["ready_file"],
                   help="written after each successful run, removed after a failed one; empty: none")
    p.add_argument("--interval", type=_positive_seconds, default=30.0, help="seconds between runs with --watch")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def main(argv: list[str] | None = None, env: dict[str, str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="nsveth-install: %(levelname)s: %(message)s")
    p = parser()
    args = p.parse_args(argv)
    if (args.rollback or args.status) and args.watch:
        p.error("--rollback and --status run once, not with --watch")
    args.ready_file = Path(args.ready_file) if args.ready_file else None
    env = dict(os.environ) if env is None else env
    uninstalling = args.uninstall or env.get("NSVETH_ACTION", "install") == "uninstall"
    job = Job(args, env, uninstalling)
    if args.status:
        return job.status()
    if args.rollback:
        return 0 if job.rollback() else 1
    if not args.watch:
        return 0 if job.run() else 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    job.watch(stop)
    return 0


class Job:
    """One install or uninstall, repeatable; remembers what must not be re-fetched."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str], uninstalling: bool) -> None:
        self.args, self.env, self.uninstalling = args, env, uninstalling
        self.pod_cidrs: tuple[conflist.Network, ...] | None = None
        self.last_error: str | None = None
        self.paths = install.Paths(
            bundle=args.bundle, bin_dir=args.cni_bin_dir, conf_dir=args.cni_conf_dir,
            conflist_name=args.conflist_name,
            allowlist_dest=Path(args.allowlist_dest) if args.allowlist_dest else None)

    def watch(self, stop: threading.Event) -> None:
        """Re-run until stopped. An uninstall is done once and then just waits,
        so a DaemonSet switched to NSVETH_ACTION=uninstall does not crash-loop."""
        _remove_ready(self.args.ready_file)  # nothing is verified by this process yet
        done = False
        while not stop.is_set():
            if not (done and self.uninstalling):
                done = self.run()
            stop.wait(self.args.interval)
        _remove_ready(self.args.ready_file)

    def status(self) -> int:
        try:
            st = install.status(self.paths)
        except (InstallError, OSError) as e:
            log.error("%s", e)
            return 1
        print(json.dumps({"binDir": str(self.paths.bin_dir), **st.to_dict()}, indent=2))
        return 0 if st.installed else 1

    def rollback(self) -> bool:
        try:
            changes = install.rollback(self.paths)
        except (InstallError, OSError) as e:
            log.error("%s", e)
            return False
        for change in changes:
            log.info("%s", change)
        return True

    def run(self) -> bool:
        """One pass; logs the result and sets the readiness file. True on success."""
        try:
            if self.uninstalling:
                changes, summary = install.uninstall(self.paths, self.args.force), {"uninstalled": True}
            else:
                outcome = install.install(self.paths, self._desired(), self.args.force)
                changes = outcome.changes
                summary = {"bundle": outcome.bundle, "conflist": str(self.paths.conflist)}
            _write_ready(self.args.ready_file, summary)
        except (InstallError, OSError) as e:
            message = str(e)
            if message != self.last_error:  # a watch loop repeats its failure; say it once
                log.error("%s", message)
            self.last_error = message
            _remove_ready(self.args.ready_file)
            return False
        self.last_error = None
        for change in changes:
            log.info("%s", change)
        return True

    def _desired(self) -> install.Desired:
        if self.args.no_conflist:
            return install.Desired(conflist=None, allowlist=self._allowlist())
        template = conflist.load_template(_read(self.args.template, "conflist template"),
                                          str(self.args.template))
        node_name = self.args.node_name or self.env.get("NODE_NAME", "")
        cidrs = self._pod_cidrs() if conflist.needs_pod_cidr(template) else ()
        cluster = self._cluster_cidrs() if conflist.needs_cluster_cidr(template) else ()
        rendered = conflist.render(template, conflist.NodeFacts(node_name, cidrs, cluster))
        return install.Desired(conflist=rendered, allowlist=self._allowlist())

    def _pod_cidrs(self) -> tuple[conflist.Network, ...]:
        # A Node's pod CIDRs never change once assigned, so the API is asked
        # once per process, not on every pass of the watch loop.
        if self.pod_cidrs is None:
            self.pod_cidrs = conflist.parse_pod_cidrs(self._raw_pod_cidrs())
            if not self.pod_cidrs:
                raise InstallError("the pod CIDR given is empty")
        return self.pod_cidrs

    def _cluster_cidrs(self) -> tuple[conflist.Network, ...]:
        # Read on every pass: the ConfigMap's file changes when the operator edits it.
        if self.args.cluster_cidr:
            raw = self.args.cluster_cidr
        elif self.env.get("NSVETH_CLUSTER_CIDR"):
            raw = [self.env["NSVETH_CLUSTER_CIDR"]]
        elif self.args.cluster_cidrs_file.exists():
            raw = [_read(self.args.cluster_cidrs_file, "cluster CIDRs file").decode(errors="replace")]
        else:
            raw = []
        return conflist.parse_cluster_cidrs(raw)

    def _raw_pod_cidrs(self) -> list[str]:
        if self.args.pod_cidr:
            return self.args.pod_cidr
        if self.env.get("NSVETH_POD_CIDR"):
            return [self.env["NSVETH_POD_CIDR"]]
        node_name = self.args.node_name or self.env.get("NODE_NAME")
        if not node_name:
            raise InstallError("the node's pod CIDR is needed: pass --pod-cidr, set NSVETH_POD_CIDR, "
                               "or set NODE_NAME so it can be read from the Node object")
        api = kube.in_cluster(self.env, self.args.service_account_dir)
        return kube.node_pod_cidrs(api, node_name)

    def _allowlist(self) -> bytes | None:
        if not self.paths.allowlist_dest or not self.args.allowlist_src.exists():
            return None
        return _read(self.args.allowlist_src, "sysctl allowlist")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise InstallError(f"cannot read the {what} {path}: {e.strerror}") from e


def _write_ready(path: Path | None, summary: dict) -> None:
    if path is None:
        return
    data = (json.dumps(summary, sort_keys=True) + "\n").encode()
    if fsatomic.sha256_file(path) != fsatomic.sha256_bytes(data):
        path.parent.mkdir(parents=True, exist_ok=True)
        fsatomic.write_file(path, data)


def _remove_ready(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)

