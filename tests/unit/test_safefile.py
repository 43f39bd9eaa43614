"""safefile: files opened as a careful root daemon opens them."""

from __future__ import annotations

import os
import stat
import threading

import pytest
from nsveth import safefile
from nsveth.safefile import Unsafe

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks need root to chown")


# ------------------------------------------------------------------ open_log
def test_open_log_creates_0600_and_appends(tmp_path):
    path = tmp_path / "log"
    for line in (b"one\n", b"two\n"):
        fd = safefile.open_log(str(path))
        try:
            os.write(fd, line)
            assert os.get_inheritable(fd) is False
        finally:
            os.close(fd)
    assert path.read_bytes() == b"one\ntwo\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_open_log_refuses_symlinks_fifos_directories_and_hard_links(tmp_path):
    target = tmp_path / "target"
    target.write_text("x")
    (tmp_path / "link").symlink_to(target)
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    os.mkfifo(tmp_path / "fifo")
    os.link(target, tmp_path / "hard")
    cases = {"link": "symbolic link", "dangling": "symbolic link", "fifo": "FIFO", "hard": "hard links",
             "missing/log": "No such file", ".": "directory"}
    for name, reason in cases.items():
        with pytest.raises(Unsafe, match=reason):
            safefile.open_log(str(tmp_path / name))
    assert target.read_text() == "x"
    assert not (tmp_path / "gone").exists()


def test_open_log_on_a_fifo_with_a_reader_does_not_block_and_writes_nothing(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        done = []
        t = threading.Thread(target=lambda: done.append(pytest.raises(Unsafe, safefile.open_log, str(fifo))), daemon=True)
        t.start()
        t.join(5)
        assert done, "open_log blocked on a FIFO"
        assert os.read(rfd, 10) == b""
    finally:
        os.close(rfd)


# --------------------------------------------------------------- read_trusted
def test_read_trusted_reads_a_private_regular_file(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    assert safefile.read_trusted(str(f)) == b"abc"
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert safefile.read_trusted("f", dir_fd=dfd) == b"abc"
    finally:
        os.close(dfd)
    with pytest.raises(FileNotFoundError):
        safefile.read_trusted(str(tmp_path / "absent"))


def test_read_trusted_caps_the_size(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"x" * 101)
    with pytest.raises(Unsafe, match="larger than 100 bytes"):
        safefile.read_trusted(str(f), limit=100)
    assert safefile.read_trusted(str(f), limit=101) == b"x" * 101
    with open(f, "wb") as out:
        out.truncate(300 << 20)  # sparse: refused by its size, never read
    with pytest.raises(Unsafe, match="larger than"):
        safefile.read_trusted(str(f))


def test_read_trusted_refuses_symlinks_fifos_and_writable_files(tmp_path):
    good = tmp_path / "good"
    good.write_text("x")
    (tmp_path / "link").symlink_to(good)
    os.mkfifo(tmp_path / "fifo")
    shared = tmp_path / "shared"
    shared.write_text("x")
    os.chmod(shared, 0o646)
    for name, reason in {"link": "symbolic link", "fifo": "FIFO", "shared": "writable by group or others", ".": "directory"}.items():
        with pytest.raises(Unsafe, match=reason):
            safefile.read_trusted(str(tmp_path / name))


@needs_root
def test_read_trusted_refuses_a_file_of_another_user(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    os.chown(f, 65534, 65534)
    with pytest.raises(Unsafe, match="owned by uid 65534"):
        safefile.read_trusted(str(f))


# --------------------------------------------------------------- write_atomic
def test_write_atomic_replaces_and_leaves_no_temp(tmp_path):
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        safefile.write_atomic(dfd, "rec", b"one")
        safefile.write_atomic(dfd, "rec", b"two")
        (tmp_path / "target").write_text("keep")
        os.symlink(tmp_path / "target", tmp_path / "lnk")
        safefile.write_atomic(dfd, "lnk", b"new")  # the rename replaces the link itself
    finally:
        os.close(dfd)
    assert (tmp_path / "rec").read_bytes() == b"two" and stat.S_IMODE(os.stat(tmp_path / "rec").st_mode) == 0o600
    assert (tmp_path / "target").read_text() == "keep" and not os.path.islink(tmp_path / "lnk")
    assert sorted(os.listdir(tmp_path)) == ["lnk", "rec", "target"]


# ---------------------------------------------------------------- directories
def test_private_dir_creates_0700_and_refuses_a_shared_one(tmp_path):
    d = tmp_path / "run"
    safefile.private_dir(str(d), ancestors=True)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    os.chmod(d, 0o770)
    with pytest.raises(Unsafe, match="writable by group or others"):
        safefile.private_dir(str(d))
    (tmp_path / "file").write_text("")
    with pytest.raises(Unsafe, match="not a directory"):
        safefile.private_dir(str(tmp_path / "file"))
    (tmp_path / "ln").symlink_to(tmp_path)
    with pytest.raises(Unsafe, match="symbolic link"):
        safefile.private_dir(str(tmp_path / "ln"))


def test_ancestors_writable_by_others_are_refused_unless_sticky(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(Unsafe, match=f"parent {shared} that is writable by group or others"):
        safefile.private_dir(str(shared / "a" / "run"), ancestors=True)
    assert not (shared / "a").exists()
    os.chmod(shared, 0o1777)
    safefile.private_dir(str(shared / "a" / "run"), ancestors=True)
    assert stat.S_IMODE(os.stat(shared / "a").st_mode) == 0o755


def test_ancestors_through_a_symlink_are_checked_where_it_leads(tmp_path):
    shared = tmp_path / "shared"
    (shared / "real").mkdir(parents=True)
    os.chmod(shared, 0o777)
    (tmp_path / "via").symlink_to(shared / "real")
    with pytest.raises(Unsafe, match=f"parent {shared} that is writable"):
        safefile.check_ancestors(str(tmp_path / "via" / "run"))


@needs_root
def test_ancestor_of_another_user_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    with pytest.raises(Unsafe, match="owned by uid 65534"):
        safefile.check_ancestors(str(theirs / "run"))
