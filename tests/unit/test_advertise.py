"""Unsolicited ARP / NA frames byte by byte, the plan, the sender record, the config range checks (no root)."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import struct
import time

import pytest
import support
from nsveth import advertise, dispatch, senders
from nsveth.errors import Code

MAC = "02:42:ac:11:00:02"
MAC_BYTES = bytes.fromhex("0242ac110002")


def test_mac_bytes():
    assert advertise.mac_bytes(MAC) == MAC_BYTES
    assert advertise.mac_bytes("FE:ff:00:00:00:01") == bytes.fromhex("feff00000001")
    with pytest.raises(ValueError):
        advertise.mac_bytes("02:42:ac:11:00")


def test_arp_announcement_bytes():
    frame = advertise.arp_announcement(MAC_BYTES, ipaddress.IPv4Address("10.1.2.3"))
    assert frame == bytes.fromhex(
        "0001"  # htype Ethernet
        "0800"  # ptype IPv4
        "06" "04"  # hlen, plen
        "0001"  # op 1: request
        "0242ac110002"  # sender MAC
        "0a010203"  # sender IP = the address
        "000000000000"  # target MAC zero
        "0a010203"  # target IP = the address
    )
    assert len(frame) == 28


def test_neighbour_advertisement_bytes():
    body = advertise.neighbour_advertisement(MAC_BYTES, ipaddress.IPv6Address("fd00::1:2"))
    assert body == bytes.fromhex(
        "88"  # type 136
        "00"  # code
        "0000"  # checksum, filled in by ipv6_packet
        "20000000"  # R=0 S=0 O=1, reserved
        "fd000000000000000000000000010002"  # target
        "02" "01"  # option: target link-layer address, 1 x 8 octets
        "0242ac110002"
    )
    flags = body[4]
    assert flags & advertise.NA_FLAG_OVERRIDE and not flags & (advertise.NA_FLAG_ROUTER | advertise.NA_FLAG_SOLICITED)


def test_unsolicited_na_packet_bytes():
    # Checksum 0xae42 checked with tcpdump ("icmp6 sum ok") on a pcap of this frame.
    packet = advertise.unsolicited_na(MAC_BYTES, ipaddress.IPv6Address("fd00::1:2"))
    assert packet == bytes.fromhex(
        "60000000"  # version 6, traffic class 0, flow label 0
        "0020"  # payload length 32
        "3a"  # next header ICMPv6
        "ff"  # hop limit 255
        "fd000000000000000000000000010002"  # source = the address
        "ff020000000000000000000000000001"  # destination ff02::1
        "8800ae42" "20000000" "fd000000000000000000000000010002" "0201" "0242ac110002"
    )


def _fold(total: int) -> int:
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


@pytest.mark.parametrize("address", ["fd00::1:2", "2001:db8::ffff:1", "fe80::1", "fd00:77::2"])
@pytest.mark.parametrize("mac", [MAC, "fe:ff:ff:ff:ff:ff", "02:00:00:00:00:01"])
def test_na_checksum_verifies(address, mac):
    """A receiver's check: the sum over pseudo-header and message, checksum included, is all ones."""
    ip = ipaddress.IPv6Address(address)
    packet = advertise.unsolicited_na(advertise.mac_bytes(mac), ip)
    src, dst, icmp = packet[8:24], packet[24:40], packet[40:]
    assert (src, dst) == (ip.packed, advertise.ALL_NODES.packed)
    pseudo = src + dst + len(icmp).to_bytes(4, "big") + bytes([0, 0, 0, 58])
    words = struct.unpack(f"!{(len(pseudo) + len(icmp)) // 2}H", pseudo + icmp)
    assert _fold(sum(words)) == 0xFFFF
    assert icmp[2:4] != b"\0\0"


def test_icmpv6_checksum_odd_length():
    """An odd-length message is summed as if padded with one zero byte; the length stays the real one."""
    a, b = ipaddress.IPv6Address("fd00::1"), ipaddress.IPv6Address("fd00::2")
    pseudo = a.packed + b.packed + (1).to_bytes(4, "big") + bytes([0, 0, 0, 58])
    words = struct.unpack("!21H", pseudo + b"\x01\x00")
    assert advertise.icmpv6_checksum(a, b, b"\x01") == ~_fold(sum(words)) & 0xFFFF


def test_sockaddr_ll_layout():
    addr = advertise._sockaddr_ll(7, advertise.ETH_P_ARP, advertise.BROADCAST_MAC)
    assert len(addr) == 20
    family, proto, ifindex, hatype, pkttype, halen = struct.unpack_from("=HHiHBB", addr)
    assert family == 17 and proto == 0x0608 and ifindex == 7 and hatype == 1 and pkttype == 0 and halen == 6
    assert addr[12:18] == b"\xff" * 6 and addr[18:] == b"\0\0"


def test_plan_splits_families():
    plan = advertise.Plan.of(3, "02:AA:00:00:00:01", ["10.0.0.2", "fd00::2", "10.0.0.3"], 3, 1000)
    assert plan.mac == "02:aa:00:00:00:01"
    assert plan.ipv4 == (ipaddress.IPv4Address("10.0.0.2"), ipaddress.IPv4Address("10.0.0.3"))
    assert plan.ipv6 == (ipaddress.IPv6Address("fd00::2"),)
    assert not plan.empty
    assert advertise.Plan.of(3, MAC, ["10.0.0.2"], 0, 1000).empty
    assert advertise.Plan.of(3, MAC, [], 3, 1000).empty


def test_start_time_of_live_and_missing_process():
    mine = advertise.start_time(os.getpid())
    assert isinstance(mine, int) and mine > 0
    assert advertise.start_time(os.getpid()) == mine
    assert advertise.start_time(2**22 + 1) is None  # above pid_max's ceiling


@pytest.mark.parametrize(
    "record",
    [None, {}, {"advertiser": None}, {"advertiser": "x"}, {"advertiser": {"pid": "1"}}, {"advertiser": {"pid": 1, "start": 5}}],
)
def test_cancel_ignores_records_without_a_sender(record, tmp_path):
    assert advertise.cancel(record, str(tmp_path / "a.sender")) is False


def test_cancel_skips_a_recycled_pid(tmp_path):
    """Our own pid with a wrong start time names an older process: never signalled."""
    start = advertise.start_time(os.getpid())
    assert advertise.cancel({"advertiser": {"pid": os.getpid(), "start": start + 1}}, str(tmp_path / "a.sender")) is False


def test_cancel_never_signals_a_process_that_does_not_hold_the_sender_lock(tmp_path):
    """The record's pid and start time match a live process (anyone can read a start time),
    but that process does not hold the attachment's sender lock: it is left alone."""
    lock = str(tmp_path / "c:eth0.sender")
    other = support.lock_holder(lock, "open")
    try:
        record = {"advertiser": {"pid": other.pid, "start": advertise.start_time(other.pid)}}
        assert senders.lock_holder(lock) is None
        assert advertise.cancel(record, lock) is False
        time.sleep(0.1)
        assert other.poll() is None, "a process that is not the sender was signalled"
    finally:
        other.kill()
        other.wait()


def test_cancel_stops_the_lock_holder(tmp_path):
    lock = str(tmp_path / "c:eth0.sender")
    sender = support.lock_holder(lock, "lockf")
    try:
        assert senders.lock_holder(lock) == sender.pid
        record = {"advertiser": {"pid": sender.pid, "start": advertise.start_time(sender.pid)}}
        assert advertise.cancel(record, lock) is True
        assert sender.wait(timeout=5) == -signal.SIGTERM
        assert senders.lock_holder(lock) is None
    finally:
        sender.kill()
        sender.wait()


def _conf(advertise_field):
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "n",
            "type": "nsveth",
            "advertise": advertise_field,
            "ipam": {"type": "host-local", "subnet": "10.0.0.0/24"},
        }
    ).encode()


ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/run/netns/none", "CNI_IFNAME": "eth0", "CNI_PATH": "/x"}


@pytest.mark.parametrize(
    "field, name",
    [
        ({"count": 4}, "advertise.count"),
        ({"count": -1}, "advertise.count"),
        ({"count": 1.5}, "advertise.count"),
        ({"count": "3"}, "advertise.count"),
        ({"intervalMs": 99}, "advertise.intervalMs"),
        ({"intervalMs": 2001}, "advertise.intervalMs"),
        ({"count": 3, "intervalMs": 0}, "advertise.intervalMs"),
    ],
)
def test_out_of_range_is_code_7_naming_the_field(field, name):
    out, status = dispatch.run(ENV, _conf(field))
    err = json.loads(out)
    assert status == 1 and err["code"] == Code.INVALID_CONFIG, err
    assert name in err["msg"]


@pytest.mark.parametrize("field", [{}, {"count": 0}, {"count": 3, "intervalMs": 100}, {"intervalMs": 2000}])
def test_in_range_values_load(field):
    from nsveth import config, request

    conf = config.load(_conf(field), request.parse(ENV))
    assert conf.advertise.count == field.get("count", 3)
    assert conf.advertise.interval_ms == field.get("intervalMs", 1000)
