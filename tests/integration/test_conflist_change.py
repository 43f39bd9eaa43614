"""DEL after the conflist changed under a running pod.

CRI runtimes (containerd, CRI-O) DEL with the conflist loaded at DEL time and,
after the first DEL, without prevResult. When an operator changes the IPAM
config or renames the network in between, nsveth still releases what its ADD
made: the lease with the IPAM config ADD used (kept in the attachment's
record), and a record left under the old network name is undone as that
network's DEL would.
"""

from __future__ import annotations

import json
import os

import pytest
from support import host_veths, netns, unique

CID = "ctr-conflist-change"


def leases(ipam_dir: str, network: str) -> list[str]:
    d = os.path.join(ipam_dir, network)
    if not os.path.isdir(d):
        return []
    return sorted(f for f in os.listdir(d) if f != "lock" and not f.startswith("last_reserved_ip"))


def records(runtime_dir: str) -> list[str]:
    out = []
    for network in os.listdir(runtime_dir) if os.path.isdir(runtime_dir) else []:
        d = os.path.join(runtime_dir, network)
        out += [f"{network}/{f}" for f in os.listdir(d) if f.endswith(".json")] if os.path.isdir(d) else []
    return sorted(out)


def nft_table(host) -> str:
    return host.run("nft", "list", "table", "inet", "nsveth", check=False).stdout


def conf_b(net, tmp_path, name: str, data_dir: str) -> dict:
    """The replacement config: another subnet, another IPAM data dir."""
    conf = net.conf(subnets=["10.78.0.0/24"], name=name)
    conf["ipam"]["dataDir"] = data_dir
    return conf


def assert_nothing_left(plugin, pod_ns, net, data_dir_b: str, names: list[str]) -> None:
    assert host_veths(plugin.host) == [] and "eth0" not in pod_ns.links()
    for name in names:
        assert leases(net.ipam_dir, name) == [] and leases(data_dir_b, name) == []
    assert records(net.runtime_dir) == []
    assert "chain" not in nft_table(plugin.host)  # no masquerade chain of the attachment
    assert not [r for r in plugin.host.routes() if r.get("dst", "").startswith(("10.77.", "10.78."))]


@pytest.mark.parametrize("changed", ["range", "range+dataDir"])
def test_same_name_new_ipam_releases_the_lease_add_made(plugin, pod_ns, net, tmp_path, changed):
    """With only the range changed, host-local alone already finds the lease (it releases by
    containerID and ifname across the network's whole data dir); a changed dataDir (or IPAM
    type) needs the recorded config."""
    data_dir_b = str(tmp_path / "ipam-b") if changed == "range+dataDir" else net.ipam_dir
    before = net.conf(ipMasq=True)
    add = plugin.run("ADD", before, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    assert leases(net.ipam_dir, net.name) == ["10.77.0.2"] and host_veths(plugin.host)

    after = conf_b(net, tmp_path, net.name, data_dir_b)
    for netns_path in (pod_ns.path, ""):  # StopPodSandbox, then the later DELs without a netns
        dele = plugin.run("DEL", after, container_id=CID, netns=netns_path)
        assert dele.status == 0, dele.stdout
        assert_nothing_left(plugin, pod_ns, net, data_dir_b, [net.name])


def test_renamed_network_releases_the_old_networks_attachment(plugin, pod_ns, net, tmp_path):
    data_dir_b = str(tmp_path / "ipam-b")
    before = net.conf(ipMasq=True, sysctl={"net.core.somaxconn": "1234"})
    original_somaxconn = pod_ns.sysctl("net/core/somaxconn")
    add = plugin.run("ADD", before, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    assert pod_ns.sysctl("net/core/somaxconn") == "1234"
    assert "masquerade" in nft_table(plugin.host)
    assert leases(net.ipam_dir, net.name) == ["10.77.0.2"]

    renamed = unique("nt-b-")
    after = conf_b(net, tmp_path, renamed, data_dir_b)
    for netns_path in (pod_ns.path, ""):
        dele = plugin.run("DEL", after, container_id=CID, netns=netns_path)
        assert dele.status == 0, dele.stdout
        assert_nothing_left(plugin, pod_ns, net, data_dir_b, [net.name, renamed])
    assert pod_ns.sysctl("net/core/somaxconn") == original_somaxconn


def test_renamed_network_keeps_other_containers_and_ifnames(inproc, pod_ns, net, tmp_path):
    """Only the record of the same containerID and ifname is this attachment."""
    before = net.conf()
    with netns("nsvp-") as other_pod:
        added = [("ctr-other", "eth0", other_pod), (CID, "eth2", pod_ns)]
        for cid, ifname, pod in added:
            reply = inproc.run("ADD", before, container_id=cid, netns=pod.path, ifname=ifname)
            assert reply.status == 0, reply.stdout

        after = conf_b(net, tmp_path, unique("nt-b-"), str(tmp_path / "ipam-b"))
        dele = inproc.run("DEL", after, container_id=CID, netns=pod_ns.path)
        assert dele.status == 0, dele.stdout
        assert "eth2" in pod_ns.links() and "eth0" in other_pod.links()
        assert leases(net.ipam_dir, net.name) == ["10.77.0.2", "10.77.0.3"]
        for cid, ifname, pod in added:
            assert inproc.run("DEL", before, container_id=cid, netns=pod.path, ifname=ifname).status == 0
    assert leases(net.ipam_dir, net.name) == [] and records(net.runtime_dir) == []


def test_record_config_naming_another_network_is_not_trusted(inproc, pod_ns, net, tmp_path):
    """A record whose config names another network than its directory is left alone (its
    release would remove a record by the wrong names)."""
    before = net.conf()
    assert inproc.run("ADD", before, container_id=CID, netns=pod_ns.path).status == 0
    path = net.record_path(CID)
    record = net.record(CID)
    # The same attachment's record under the network its forged config names, itself
    # naming this one: trusting either would remove the other by the wrong names.
    elsewhere = os.path.join(net.runtime_dir, "somewhere-else")
    os.mkdir(elsewhere, 0o700)
    fd = os.open(os.path.join(elsewhere, f"{CID}:eth0.json"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    record["config"] = json.dumps({**before, "name": "somewhere-else"})
    with open(path, "w") as f:
        json.dump(record, f)
    after = conf_b(net, tmp_path, unique("nt-b-"), str(tmp_path / "ipam-b"))
    dele = inproc.run("DEL", after, container_id=CID, netns=pod_ns.path)
    assert dele.status == 0, dele.stdout
    assert records(net.runtime_dir) == sorted([f"{net.name}/{CID}:eth0.json", f"somewhere-else/{CID}:eth0.json"])
    assert leases(net.ipam_dir, net.name) == ["10.77.0.2"]
    os.unlink(os.path.join(elsewhere, f"{CID}:eth0.json"))
    assert inproc.run("DEL", before, container_id=CID, netns=pod_ns.path).status == 0
    assert leases(net.ipam_dir, net.name) == [] and records(net.runtime_dir) == []


def test_renamed_network_with_an_unusable_runtime_dir_deletes_by_name(plugin, pod_ns, net, tmp_path):
    """A runtime dir others can write holds no trusted record: DEL under the new name still
    succeeds and removes what it finds by name (the host veth), as any DEL does there."""
    before = net.conf()
    assert plugin.run("ADD", before, container_id=CID, netns=pod_ns.path).status == 0
    os.chmod(net.runtime_dir, 0o777)
    try:
        after = conf_b(net, tmp_path, unique("nt-b-"), str(tmp_path / "ipam-b"))
        dele = plugin.run("DEL", after, container_id=CID, netns=pod_ns.path)
        assert dele.status == 0, dele.stdout
        assert host_veths(plugin.host) == [] and "eth0" not in pod_ns.links()
        assert records(net.runtime_dir) == [f"{net.name}/{CID}:eth0.json"]  # not acted on
    finally:
        os.chmod(net.runtime_dir, 0o700)
    assert plugin.run("DEL", before, container_id=CID, netns=pod_ns.path).status == 0
    assert leases(net.ipam_dir, net.name) == [] and records(net.runtime_dir) == []
