"""Reading the Node's pod CIDRs over HTTPS, against a local fake API server on
127.0.0.1 with a throwaway CA (made with the openssl CLI)."""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from deploy_support import Node
from nsveth_install import InstallError, kube


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=kubernetes",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", d / "key.pem", "-out", d / "cert.pem"],
        check=True, capture_output=True)
    return {"cert": d / "cert.pem", "key": d / "key.pem"}


class FakeApi(http.server.BaseHTTPRequestHandler):
    nodes: dict[str, dict] = {}
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.seen.append((self.path, self.headers.get("Authorization")))
        if self.headers.get("Authorization") != "Bearer s3cret":
            return self._reply(401, {"kind": "Status", "reason": "Unauthorized"})
        name = self.path.removeprefix("/api/v1/nodes/")
        if self.path.startswith("/api/v1/nodes/") and name in self.nodes:
            return self._reply(200, self.nodes[name])
        self._reply(404, {"kind": "Status", "reason": "NotFound"})

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def api(tls, tmp_path: Path):
    FakeApi.nodes, FakeApi.seen = {}, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls["cert"], tls["key"])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("s3cret\n")
    (sa / "ca.crt").write_bytes(tls["cert"].read_bytes())
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(server.server_address[1])}
    try:
        yield env, sa
    finally:
        server.shutdown()
        server.server_close()


def node_obj(**spec) -> dict:
    return {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "n"}, "spec": spec}


def test_reads_dual_stack_pod_cidrs(api) -> None:
    env, sa = api
    FakeApi.nodes["node-1"] = node_obj(podCIDR="10.244.3.0/24", podCIDRs=["10.244.3.0/24", "fd00:3::/64"])
    assert kube.node_pod_cidrs(kube.in_cluster(env, sa), "node-1") == ["10.244.3.0/24", "fd00:3::/64"]
    assert FakeApi.seen == [("/api/v1/nodes/node-1", "Bearer s3cret")]


def test_falls_back_to_pod_cidr_singular(api) -> None:
    env, sa = api
    FakeApi.nodes["old"] = node_obj(podCIDR="10.1.0.0/24")
    assert kube.node_pod_cidrs(kube.in_cluster(env, sa), "old") == ["10.1.0.0/24"]


def test_node_without_pod_cidr_is_a_clear_error(api) -> None:
    env, sa = api
    FakeApi.nodes["fresh"] = node_obj()
    with pytest.raises(InstallError, match="node 'fresh' has no spec.podCIDR yet"):
        kube.node_pod_cidrs(kube.in_cluster(env, sa), "fresh")


def test_http_errors_are_reported(api) -> None:
    env, sa = api
    with pytest.raises(InstallError, match="HTTP 404"):
        kube.node_pod_cidrs(kube.in_cluster(env, sa), "missing")
    (sa / "token").write_text("wrong")
    with pytest.raises(InstallError, match="HTTP 401"):
        kube.node_pod_cidrs(kube.in_cluster(env, sa), "missing")


def test_untrusted_server_certificate_is_refused(api, tmp_path: Path) -> None:
    env, sa = api
    FakeApi.nodes["node-1"] = node_obj(podCIDR="10.244.3.0/24")
    other = tmp_path / "other"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=x",
                    "-keyout", other.with_suffix(".key"), "-out", sa / "ca.crt"], check=True, capture_output=True)
    with pytest.raises(InstallError, match="CERTIFICATE_VERIFY_FAILED"):
        kube.node_pod_cidrs(kube.in_cluster(env, sa), "node-1")
    assert FakeApi.seen == []  # the token never left the process


def test_missing_token_is_a_clear_error(tmp_path: Path) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    with pytest.raises(InstallError, match="service account token"):
        kube.in_cluster(env, tmp_path)


def test_ipv6_service_host_is_bracketed() -> None:
    assert kube.ApiServer("fd00::1", "443", "t", Path("ca")).base_url == "https://[fd00::1]:443"


def test_installer_renders_the_conflist_from_the_node_object(api, node: Node) -> None:
    env, sa = api
    FakeApi.nodes["node-1"] = node_obj(podCIDRs=["10.244.9.0/24", "fd00:9::/64"])
    args = [a if a != str(node.root / "no-sa") else str(sa) for a in node.args()]
    from nsveth_install import cli
    assert cli.main(args, env={**env, "NODE_NAME": "node-1"}) == 0
    ranges = json.loads(node.conflist.read_text())["plugins"][0]["ipam"]["ranges"]
    assert ranges == [[{"subnet": "10.244.9.0/24"}], [{"subnet": "fd00:9::/64"}]]
    # An explicit override wins over the Node object and needs no API call.
    FakeApi.seen.clear()
    assert cli.main([*args, "--pod-cidr", "10.244.9.0/24"], env={**env, "NODE_NAME": "node-1"}) == 0
    assert FakeApi.seen == []
