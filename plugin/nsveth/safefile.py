"""Files opened as a careful root daemon opens them.

nsveth runs as root on paths that come from a config file, and some of the
directories on those paths may be writable by others. Every file it reads
or writes goes through here:

- never through a symbolic link in the last component (`O_NOFOLLOW`), never
  blocking on a FIFO or device (`O_NONBLOCK`, then `fstat`: regular files only);
- what it trusts (the allowlist, state records, caches) must belong to root
  (or the user nsveth runs as) and be writable by no one else, and is read up
  to a size cap, so a planted or runaway file can neither steer nor exhaust it;
- what it writes is written to a temp file and renamed, inside a directory
  opened once (`dir_fd`), so a reader sees the old or the new file, never half;
- a directory it keeps trusted files in (the runtime dir) must be owned by
  root and writable by no one else, and so must every directory above it
  (a writable parent lets its writer swap the whole path), except that a
  sticky one (/tmp) is fine: there only an entry's owner can rename it.

Problems are raised as `Unsafe` (a reason naming no path: callers name it in
their own message); a missing file stays FileNotFoundError, since "absent"
usually has its own meaning to the caller.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

RECORD_LIMIT = 64 * 1024  # state records, caches, the allowlist: none is near this


class Unsafe(Exception):
    """A file or directory that must not be used; the message says why (without its path)."""


def trusted_owners() -> tuple[int, ...]:
    """root, and the user nsveth runs as (the same on a node; a developer's run as itself)."""
    return (0, os.geteuid())


def _reason(e: OSError, verb: str = "opened") -> str:
    """What is wrong, as a predicate of the path ("is a symbolic link (not followed)")."""
    if e.errno == errno.ELOOP:
        return "is a symbolic link (not followed)"
    if e.errno == errno.ENXIO:
        return "is a FIFO or socket that nobody reads"
    if e.errno == errno.EISDIR:
        return "is a directory"
    if e.errno == errno.ENOTDIR and verb == "opened as a directory":
        return "is not a directory"
    return f"cannot be {verb}: {e.strerror or e}"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "of another kind"


def _check_regular(st: os.stat_result, trusted: bool) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise Unsafe(f"is {_kind(st.st_mode)}, not a regular file")
    if trusted:
        if st.st_uid not in trusted_owners():
            raise Unsafe(f"is owned by uid {st.st_uid}, not by root")
        if st.st_mode & 0o022:
            raise Unsafe(f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})")


# ------------------------------------------------------------------ logs
def open_log(path: str) -> int:
    """A descriptor to append log lines to `path` (created 0600); Unsafe if it is not a plain file.

    O_NONBLOCK: opening a FIFO nobody reads fails at once (ENXIO) instead of
    waiting for a reader, and one with a reader is refused after the fstat.
    A file with other hard links is refused too: appending to it would write
    into whatever file the other name is.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise Unsafe(_reason(e)) from None
    try:
        st = os.fstat(fd)
        _check_regular(st, trusted=False)
        if st.st_nlink > 1:
            raise Unsafe(f"has {st.st_nlink} hard links")
    except BaseException:
        os.close(fd)
        raise
    return fd


# -------------------------------------------------------- trusted files
def read_trusted(path: str, limit: int = RECORD_LIMIT, dir_fd: int | None = None) -> bytes:
    """The bytes of a regular file owned by root and writable by no one else, at most `limit` of them.

    `path` is relative to `dir_fd` when given. FileNotFoundError when there
    is nothing at `path`; Unsafe for anything else that is wrong with it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise Unsafe(_reason(e, "read")) from None
    try:
        st = os.fstat(fd)
        _check_regular(st, trusted=True)
        if st.st_size > limit:
            raise Unsafe(f"is larger than {limit} bytes ({st.st_size})")
        chunks, size = [], 0
        while size <= limit:  # the size can change after the fstat: read no more than the cap either way
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise Unsafe(f"is larger than {limit} bytes")
        return b"".join(chunks)
    except OSError as e:
        raise Unsafe(_reason(e, "read")) from None
    finally:
        os.close(fd)


def write_atomic(dir_fd: int, name: str, data: bytes) -> None:
    """Replace `name` in the directory `dir_fd` with `data` (mode 0600): temp file, then rename.

    Not fsynced: what nsveth writes (state records, caches) describes kernel
    objects that only a reboot loses, and a reboot loses them too (the
    runtime dir is normally tmpfs); the rename alone is atomic for readers.
    """
    tmp = f".{name}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def is_temporary(name: str) -> bool:
    """A temp file `write_atomic` leaves when its writer is killed before the rename."""
    return name.startswith(".") and name.endswith(".tmp")


# ---------------------------------------------------------- directories
def open_dir(path: str) -> int:
    """A descriptor of the directory `path` (its last component not a symlink), owned by this user and writable by no one else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise Unsafe(_reason(e, "opened as a directory")) from None
    try:
        _check_private_dir(os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_private_dir(st: os.stat_result) -> None:
    if not stat.S_ISDIR(st.st_mode):
        raise Unsafe(f"is {_kind(st.st_mode)}, not a directory")
    if st.st_uid != os.geteuid():
        raise Unsafe(f"is owned by uid {st.st_uid}, not by uid {os.geteuid()}")
    if st.st_mode & 0o022:
        raise Unsafe(f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})")


def private_dir(path: str, ancestors: bool = False) -> None:
    """Create `path` (0700) if needed; Unsafe unless it is a directory owned by this user and
    writable by no one else, and (with `ancestors`) so is every directory above it."""
    if ancestors:
        if not check_ancestors(path):
            _make_parents(path)
            check_ancestors(path)  # what was created (or raced in) is checked like the rest
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise Unsafe(f"cannot be created: {e.strerror or e}") from None
    try:
        st = os.lstat(path)
    except OSError as e:
        raise Unsafe(_reason(e, "examined")) from None
    _check_private_dir(st)


def _make_parents(path: str) -> None:
    """Create the missing directories above `path`, 0755 (os.makedirs would make them 0777 less the
    umask: writable by others under umask 0)."""
    parts = [p for p in os.path.dirname(os.path.normpath(path)).split("/") if p]
    for i in range(1, len(parts) + 1):
        prefix = "/" + "/".join(parts[:i])
        try:
            os.mkdir(prefix, 0o755)
        except FileExistsError:
            continue
        except OSError as e:
            raise Unsafe(f"cannot be created: {prefix}: {e.strerror or e}") from None


def check_ancestors(path: str) -> bool:
    """Every directory above `path`, as written and through any symlink on the way, is owned by root
    (or this user) and not writable by group or others unless sticky; Unsafe naming the first that is
    not. False when one is missing (the check stops there)."""
    pending = [os.path.dirname(os.path.normpath(path))]
    seen: set[str] = set()
    while pending:
        directory = pending.pop()
        parts = [p for p in directory.split("/") if p]
        for i in range(len(parts) + 1):
            prefix = "/" + "/".join(parts[:i])
            if prefix in seen:
                continue
            seen.add(prefix)
            try:
                st = os.lstat(prefix)
            except FileNotFoundError:
                return False
            except OSError as e:
                raise Unsafe(f"has a parent {prefix} that cannot be examined: {e.strerror or e}") from None
            if st.st_uid not in trusted_owners():
                raise Unsafe(f"has a parent {prefix} owned by uid {st.st_uid}, not by root")
            if stat.S_ISLNK(st.st_mode):
                pending.append(os.path.realpath(prefix))  # the directories the link leads through
            elif st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
                raise Unsafe(
                    f"has a parent {prefix} that is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}): "
                    "they could replace the path"
                )
    return True
