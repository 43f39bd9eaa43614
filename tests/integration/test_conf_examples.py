"""Every nsveth config in conf-examples/ goes through ADD, CHECK and DEL with the built executable.

(The chained conflists run whole through cnitool in tests/e2e; here each
nsveth entry runs alone, as libcni would call it, with IPAM and runtime state
moved to a temp dir.)
"""

from __future__ import annotations

import glob
import json
import os

import pytest

from support import REPO, host_veths, with_prev

EXAMPLES = sorted(
    p for p in glob.glob(os.path.join(REPO, "conf-examples", "*")) if p.endswith((".conf", ".conflist", ".json"))
)


def nsveth_configs(path: str) -> list[dict]:
    with open(path) as f:
        doc = json.load(f)
    if "plugins" not in doc:
        return [doc]
    return [
        {**p, "name": doc["name"], "cniVersion": doc["cniVersion"]} for p in doc["plugins"] if p.get("type") == "nsveth"
    ]


@pytest.mark.parametrize("path", EXAMPLES, ids=[os.path.basename(p) for p in EXAMPLES])
def test_example(exe, pod_ns, tmp_path, path):
    confs = nsveth_configs(path)
    assert confs, f"{path} has no nsveth entry"
    for n, conf in enumerate(confs):
        conf = json.loads(json.dumps(conf))
        conf["runtimeDir"] = str(tmp_path / "run")
        conf["ipam"]["dataDir"] = str(tmp_path / "ipam")
        cid = f"ctr-example-{n}"
        add = exe.run("ADD", conf, container_id=cid, netns=pod_ns.path)
        assert add.status == 0, add.stdout
        if conf["cniVersion"] >= "0.4.0":
            chk = exe.run("CHECK", with_prev(conf, add.json), container_id=cid, netns=pod_ns.path)
            assert chk.status == 0, chk.stdout
        assert exe.run("DEL", with_prev(conf, add.json), container_id=cid, netns=pod_ns.path).status == 0
        # Bridge mode leaves its bridge (by design); no veth may stay.
        links = exe.host.links()
        assert [v for v in host_veths(exe.host) if links[v].get("linkinfo", {}).get("info_kind") != "bridge"] == []
