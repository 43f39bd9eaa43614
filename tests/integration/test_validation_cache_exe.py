"""The built executable remembers validated configs under the runtime dir: one entry for the ADD
config, one for the DEL config with its prevResult left out, whatever each pod's prevResult is."""

from __future__ import annotations

import os
import stat

from nsveth.errors import Code


def test_entries_for_add_and_del(exe, net, host_ns):
    from support import netns

    conf = net.conf("1.0.0")
    cache = os.path.join(net.runtime_dir, ".validated")
    with netns("nsvp-") as pod1, netns("nsvp-") as pod2:
        # The first ADD makes the runtime dir; the cache only lives in an existing one.
        add1 = exe.run("ADD", conf, container_id="ctr-vcache1", netns=pod1.path)
        assert add1.status == 0, add1.stdout
        add2 = exe.run("ADD", conf, container_id="ctr-vcache2", netns=pod2.path)
        assert add2.status == 0, add2.stdout
        st = os.stat(cache)
        assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
        assert len(os.listdir(cache)) == 1
        dele = exe.run("DEL", {**conf, "prevResult": add1.json}, container_id="ctr-vcache1", netns=pod1.path)
        assert dele.status == 0, dele.stdout
        inodes = {name: os.stat(os.path.join(cache, name)).st_ino for name in os.listdir(cache)}
        assert len(inodes) == 2
        # Another pod's prevResult: a hit, so no entry is rewritten (a store renames a new file in).
        dele = exe.run("DEL", {**conf, "prevResult": add2.json}, container_id="ctr-vcache2", netns=pod2.path)
        assert dele.status == 0, dele.stdout
        assert {name: os.stat(os.path.join(cache, name)).st_ino for name in os.listdir(cache)} == inodes


def test_invalid_config_is_refused_every_time(exe, pod_ns, net):
    conf = net.conf("1.0.0", mtu=10)
    for _ in range(2):
        reply = exe.run("ADD", conf, container_id="ctr-vbad", netns=pod_ns.path)
        assert reply.status == 1 and reply.code == Code.INVALID_CONFIG
