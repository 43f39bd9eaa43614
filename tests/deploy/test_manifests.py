"""The Kubernetes manifests and the Containerfile, checked offline.

Schema validation uses kubernetes-validate, which ships the API's JSON schemas
(no cluster, no network). The cross-checks tie the manifest, the image layout
and the installer's defaults together, since nothing else would notice if one
of them moved.
"""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path

import kubernetes_validate
import pytest
from deploy_support import DEPLOY, REPO, manifest_docs
from nsveth_install import cli

# Oldest and newest Kubernetes versions supported with this manifest.
K8S_VERSIONS = ["1.27.0", "1.37.0"]


def doc(kind: str) -> dict:
    (found,) = [d for d in manifest_docs() if d["kind"] == kind]
    return found


def pod_spec() -> dict:
    return doc("DaemonSet")["spec"]["template"]["spec"]


def container() -> dict:
    """The installer container (the other one is the warm server, tests/integration/test_serve_deploy.py)."""
    (c,) = [c for c in pod_spec()["containers"] if c["name"] == "install"]
    return c


def mounts() -> dict[str, str]:
    """mountPath -> volume, for the installer container."""
    return {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}


def volume(name: str) -> dict:
    (v,) = [v for v in pod_spec()["volumes"] if v["name"] == name]
    return v


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("kind", ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet"])
def test_manifest_validates_against_the_api_schema(kind: str, version: str) -> None:
    kubernetes_validate.validate(doc(kind), version, strict=True)


def test_schema_validation_is_not_a_no_op() -> None:
    broken = copy.deepcopy(doc("DaemonSet"))
    broken["spec"]["template"]["spec"]["tolerations"][0]["operatr"] = "Exists"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_daemonset_runs_on_every_node_as_node_critical_host_network() -> None:
    spec = pod_spec()
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["hostNetwork"] is True
    assert doc("DaemonSet")["metadata"]["namespace"] == "kube-system"
    assert container()["resources"]["requests"].keys() >= {"cpu", "memory"}


def test_host_paths_are_mounted_where_the_installer_writes() -> None:
    m = mounts()
    expected = {
        cli.DEFAULTS["cni_bin_dir"]: "/opt/cni/bin",
        cli.DEFAULTS["cni_conf_dir"]: "/etc/cni/net.d",
        str(Path(cli.DEFAULTS["allowlist_dest"]).parent): "/etc/cni/nsveth",
    }
    for mount_path, host_path in expected.items():
        assert volume(m[mount_path])["hostPath"]["path"] == host_path


def test_configmap_is_mounted_where_the_installer_reads_its_template() -> None:
    config_dir = Path(cli.DEFAULTS["template"]).parent
    assert Path(cli.DEFAULTS["allowlist_src"]).parent == config_dir
    vol = volume(mounts()[str(config_dir)])
    assert vol["configMap"]["name"] == doc("ConfigMap")["metadata"]["name"]
    assert Path(cli.DEFAULTS["template"]).name in doc("ConfigMap")["data"]
    json.loads(doc("ConfigMap")["data"][Path(cli.DEFAULTS["template"]).name])


def test_readiness_probe_checks_the_installers_ready_file() -> None:
    probe = container()["readinessProbe"]["exec"]["command"]
    ready = cli.DEFAULTS["ready_file"]
    assert probe == ["test", "-s", ready]
    assert volume(mounts()[str(Path(ready).parent)]).get("emptyDir") is not None


def test_node_name_comes_from_the_downward_api_and_rbac_allows_reading_it() -> None:
    env = {e["name"]: e for e in container()["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["NSVETH_ACTION"]["value"] == "install"
    sa = doc("ServiceAccount")["metadata"]
    assert pod_spec()["serviceAccountName"] == sa["name"]
    assert doc("ClusterRole")["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
    binding = doc("ClusterRoleBinding")
    assert binding["roleRef"]["name"] == doc("ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}]


def test_container_args_are_accepted_by_the_installer() -> None:
    args = cli.parser().parse_args(container()["args"])
    assert args.watch


# -- Containerfile -----------------------------------------------------------

def containerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    text = (DEPLOY / "Containerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def copies() -> dict[str, str]:
    return {shlex.split(a)[1]: shlex.split(a)[0] for i, a in containerfile() if i == "COPY"}


def test_containerfile_copies_paths_that_exist_in_the_repo() -> None:
    for src in copies().values():
        if src.startswith("dist/"):
            continue  # build output of scripts/build-portable.sh, checked below
        assert (REPO / src).exists(), f"COPY {src}: no such path in the repo"
    # The image ships the portable bundle (glibc >= 2.31 nodes), not ./build.sh's.
    assert copies()[cli.DEFAULTS["bundle"] + "/"] == "dist/portable/nsveth/"


def test_dockerignore_lets_through_what_the_image_copies() -> None:
    ignore = (DEPLOY / "Containerfile.dockerignore").read_text().split()
    for src in copies().values():
        assert "!" + src in ignore, f"COPY {src} is excluded from the build context"


@pytest.mark.skipif(not (REPO / "dist" / "portable" / "nsveth").exists(), reason="run scripts/build-portable.sh first")
def test_built_bundle_has_the_layout_the_image_expects() -> None:
    assert (REPO / "dist" / "portable" / "nsveth" / "nsveth").is_file()
    assert (REPO / "dist" / "portable" / "nsveth" / "_internal").is_dir()


def test_containerfile_entrypoint_runs_the_installer_module() -> None:
    instructions = dict(containerfile())
    assert instructions["FROM"].startswith("docker.io/library/python:3.11-slim")
    env = dict(kv.split("=", 1) for kv in instructions["ENV"].split())
    installer_dest = [d for d, s in copies().items() if s.startswith("deploy/installer/")]
    assert installer_dest == [f"{env['PYTHONPATH']}/nsveth_install/"]
    assert json.loads(instructions["ENTRYPOINT"]) == ["python3", "-m", "nsveth_install"]
    cli.parser().parse_args(json.loads(instructions["CMD"]))


def test_image_name_matches_the_documented_build_tag() -> None:
    assert f"-t {container()['image']} ." in (DEPLOY / "Containerfile").read_text()


# -- least privilege -----------------------------------------------------------

def test_pod_runs_under_the_runtime_default_seccomp_profile() -> None:
    assert pod_spec()["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # No container overrides it with something weaker.
    assert "seccompProfile" not in container().get("securityContext", {})


def test_container_has_nothing_beyond_what_copying_files_needs() -> None:
    """The installer: root (the host dirs are root's, mode 0755) without any capability: an owner
    may write its own directories without CAP_DAC_OVERRIDE, and nothing else is done on the host."""
    sc = container()["securityContext"]
    assert sc["runAsUser"] == 0
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc.get("privileged", False) is False
    spec = pod_spec()
    host_path = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    installer_paths = sorted(host_path[m["name"]] for m in container()["volumeMounts"] if m["name"] in host_path)
    assert installer_paths == ["/etc/cni/net.d", "/etc/cni/nsveth", "/opt/cni/bin"]
    # The pod's other host access is the warm server's alone: the host's pids (its requests'
    # announcement senders are checked in the host's /proc) and its socket dir.
    assert not spec.get("hostIPC")
    (serve,) = [c for c in spec["containers"] if c["name"] == "serve"]
    serve_paths = sorted(host_path[m["name"]] for m in serve["volumeMounts"] if m["name"] in host_path)
    assert serve_paths == ["/run/nsveth"]
    assert sorted(host_path.values()) == sorted(installer_paths + serve_paths)
    assert spec.get("hostPID") is True


def test_readme_pins_the_image_by_digest() -> None:
    readme = (DEPLOY / "README.md").read_text()
    assert "@sha256:" in readme
    assert "RepoDigests" in readme or "--digestfile" in readme  # how to get the digest
