"""Read this node's pod CIDRs from the Kubernetes API, in-cluster.

The downward API cannot expose a Node's spec.podCIDR to a pod, only the node's
name (spec.nodeName). So the pod gets NODE_NAME from the downward API and this
module asks the API server for the Node, authenticated with the pod's service
account token and verified against the cluster CA the kubelet mounts next to
it. The DaemonSet's ClusterRole grants `get` on nodes and nothing else.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import InstallError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class ApiServer:
    host: str
    port: str
    token: str
    ca_file: Path

    @property
    def base_url(self) -> str:
        # An IPv6 service host (single-stack v6 clusters) needs brackets in a URL.
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"


def in_cluster(env: dict[str, str], sa_dir: Path = SERVICE_ACCOUNT_DIR) -> ApiServer:
    """The API server the kubelet told this pod about, with the pod's credentials."""
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise InstallError("not running in a cluster (KUBERNETES_SERVICE_HOST/PORT unset); "
                           "pass --pod-cidr or set NSVETH_POD_CIDR")
    try:
        token = (sa_dir / "token").read_text().strip()
    except OSError as e:
        raise InstallError(f"cannot read the service account token in {sa_dir}: {e}") from e
    return ApiServer(host, port, token, sa_dir / "ca.crt")


def node_pod_cidrs(api: ApiServer, node_name: str) -> list[str]:
    """spec.podCIDRs of the Node (spec.podCIDR on clusters that only set that)."""
    spec = _get_json(api, f"/api/v1/nodes/{urllib.parse.quote(node_name, safe='')}").get("spec") or {}
    cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    if not cidrs:
        # The node controller assigns the range shortly after a node joins; or
        # the cluster does not allocate node CIDRs at all (--allocate-node-cidrs).
        raise InstallError(f"node {node_name!r} has no spec.podCIDR yet; "
                           "is the controller manager allocating node CIDRs? (or pass --pod-cidr)")
    return [str(c) for c in cidrs]


def _get_json(api: ApiServer, path: str) -> dict:
    try:
        context = ssl.create_default_context(cafile=str(api.ca_file))
    except (OSError, ssl.SSLError) as e:
        raise InstallError(f"cannot load the cluster CA {api.ca_file}: {e}") from e
    request = urllib.request.Request(
        api.base_url + path,
        headers={"Authorization": f"Bearer {api.token}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS, context=context) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raise InstallError(f"GET {path} from the API server: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise InstallError(f"GET {path} from the API server at {api.base_url}: {e}") from e
    except json.JSONDecodeError as e:
        raise InstallError(f"GET {path}: the API server's answer is not JSON: {e}") from e
