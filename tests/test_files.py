"""files: atomic writes (the old file or the new one, never half of one; mode, owner and symlinks kept;
names that fit; abandoned temporaries removed, and nothing else) and bounded reads of regular files."""

import os
import re
import select
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

from chaingrad import files, nn
from chaingrad.files import TEMP_SUFFIX, atomic_write, read_regular


def temporaries(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(TEMP_SUFFIX))


def test_writes_the_new_content(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_a_failure_while_writing_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def half_then_fail(f):
        f.write(b"ne")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_the_file_gets_the_permissions_of_an_ordinary_file(tmp_path):
    ordinary = tmp_path / "ordinary"
    ordinary.write_bytes(b"")
    path = tmp_path / "atomic"
    atomic_write(path, lambda f: f.write(b""))
    assert path.stat().st_mode & 0o777 == ordinary.stat().st_mode & 0o777


# ---------------------------------------------------------------------------
# Names: the temporary fits NAME_MAX, is recognisably ours and tied to its target
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["m" * 245 + ".json", "é" * 125 + ".json", "m" * 255],
    ids=["250 characters", "255 bytes of UTF-8", "255 characters"],
)
def test_a_save_to_the_longest_legal_name_works(name, tmp_path):
    seen = []

    def write(f):
        seen.extend(temporaries(tmp_path))
        f.write(b"new")

    atomic_write(tmp_path / name, write)
    assert (tmp_path / name).read_bytes() == b"new"
    assert os.listdir(tmp_path) == [name]
    (temp,) = seen
    assert len(os.fsencode(temp)) <= os.pathconf(tmp_path, "PC_NAME_MAX")
    model = nn.MLP(2, [3, 1], seed=1)
    model.save(tmp_path / name)
    assert nn.MLP(2, [3, 1], seed=2).load(tmp_path / name).state_dict() == model.state_dict()
    assert os.listdir(tmp_path) == [name]


def test_the_temporary_is_hidden_beside_the_target_and_named_after_it(tmp_path):
    seen = []
    atomic_write(tmp_path / "model.json", lambda f: seen.extend(os.listdir(tmp_path)))
    (temp,) = seen
    assert re.fullmatch(r"\.model\.json~[0-9a-f]{8}\.[0-9a-f]{8}\.chaingrad-tmp", temp), temp


# ---------------------------------------------------------------------------
# Abandoned temporaries: a process killed while saving leaves one; the next save removes it
# ---------------------------------------------------------------------------

# The child saves, writes half, says so, and waits for a line on stdin (or to be killed) before
# finishing the save.
CHILD = """
import sys
from chaingrad.files import atomic_write

def write(f):
    f.write(b"half of the child's ")
    f.flush()
    print("writing", flush=True)
    sys.stdin.readline()
    f.write(b"file")

atomic_write(sys.argv[1], write)
"""


class Saver:
    """A child process stopped in the middle of a save to `path`."""

    def __init__(self, path):
        self.path = path
        before = set(temporaries(path.parent))
        self.child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready, _, _ = select.select([self.child.stdout], [], [], 120)
        said = self.child.stdout.readline().strip() if ready else ""
        assert said == "writing", f"the child did not start writing: {self.child.poll()} {said!r}"
        (self.temp,) = set(temporaries(path.parent)) - before

    def kill(self):
        self.child.kill()  # SIGKILL: no cleanup runs
        assert self.child.wait(60) == -signal.SIGKILL
        self.close()

    def finish(self):
        self.child.stdin.write("go\n")
        self.child.stdin.flush()
        assert self.child.wait(60) == 0, self.child.stderr.read()
        self.close()

    def close(self):
        for stream in (self.child.stdin, self.child.stdout, self.child.stderr):
            stream.close()


@pytest.fixture
def savers():
    started = []

    def start(path):
        saver = Saver(path)
        started.append(saver)
        return saver

    yield start
    for saver in started:
        if saver.child.poll() is None:
            saver.child.kill()
            saver.child.wait(60)
            saver.close()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_the_next_save_removes_the_temporary_of_a_killed_save(tmp_path, savers):
    path = tmp_path / "model.json"
    path.write_bytes(b"old")
    saver = savers(path)
    saver.kill()
    assert temporaries(tmp_path) == [saver.temp], "the killed save should have left its temporary"
    assert path.read_bytes() == b"old"
    model = nn.MLP(2, [3, 1], seed=1)
    model.save(path)
    assert os.listdir(tmp_path) == ["model.json"]
    assert nn.MLP(2, [3, 1], seed=2).load(path).state_dict() == model.state_dict()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_the_temporary_of_a_killed_save_to_a_long_name_is_removed_too(tmp_path, savers):
    # Two names that share the part of them that fits in a temporary's name: each save removes only
    # its own target's temporaries (the hash of the whole name tells them apart).
    mine, other = tmp_path / ("m" * 240 + "-a.json"), tmp_path / ("m" * 240 + "-b.json")
    theirs = savers(other)
    theirs.kill()
    ours = savers(mine)
    ours.kill()
    atomic_write(mine, lambda f: f.write(b"new"))
    assert temporaries(tmp_path) == [theirs.temp]
    atomic_write(other, lambda f: f.write(b"new"))
    assert temporaries(tmp_path) == []


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_save_removes_nothing_but_its_own_abandoned_temporaries(tmp_path, savers):
    path = tmp_path / "model.json"
    killed = savers(tmp_path / "other.json")  # another target's abandoned temporary
    killed.kill()
    live = savers(path)  # a save in progress to the same path: its temporary is not abandoned
    dead = savers(path)
    dead.kill()
    precious = tmp_path / "precious"
    precious.write_bytes(b"keep me")
    lookalike = re.sub(r"\.[0-9a-f]{8}\.chaingrad-tmp$", ".0123abcd.chaingrad-tmp", dead.temp)
    others = {
        ".model.json.0123abcd.tmp": b"an older chaingrad's temporary",  # not recognisably ours
        ".model.json~junk.chaingrad-tmp": b"not our pattern",
        "model.json.chaingrad-tmp": b"not hidden",
    }
    for name, content in others.items():
        (tmp_path / name).write_bytes(content)
    os.symlink(precious, tmp_path / lookalike)  # our pattern, but a link: not ours

    atomic_write(path, lambda f: f.write(b"parent"))

    assert dead.temp not in os.listdir(tmp_path)
    assert {killed.temp, live.temp, lookalike, *others} <= set(os.listdir(tmp_path))
    assert os.path.islink(tmp_path / lookalike) and precious.read_bytes() == b"keep me"
    for name, content in others.items():
        assert (tmp_path / name).read_bytes() == content
    live.finish()  # the save in progress completes: its temporary was left alone
    assert path.read_bytes() == b"half of the child's file"
    assert live.temp not in os.listdir(tmp_path)


def test_without_locks_only_temporaries_untouched_for_an_hour_count_as_abandoned(tmp_path, monkeypatch):
    # Where there is no fcntl (Windows), a lock cannot tell a live save from a dead one: age does.
    path = tmp_path / "model.json"
    names = []
    atomic_write(path, lambda f: names.extend(temporaries(tmp_path)))
    old_name = names[0]
    recent_name = old_name[:-22] + "0123abcd" + old_name[-14:]
    for name in (old_name, recent_name):
        (tmp_path / name).write_bytes(b"left behind")
    two_hours_ago = time.time() - 7200
    os.utime(tmp_path / old_name, (two_hours_ago, two_hours_ago))
    monkeypatch.setattr(files, "fcntl", None)
    atomic_write(path, lambda f: f.write(b"new"))
    assert temporaries(tmp_path) == [recent_name]


def test_a_temporary_removed_before_its_save_locked_it_is_replaced_by_another(tmp_path, monkeypatch):
    # Another save's cleanup can find a temporary in the instant between its creation and its lock,
    # take it for abandoned and remove it: the save then makes another and succeeds.
    path = tmp_path / "model.json"
    real_lock, removed = files._lock, []

    def lock(fd, wait):
        if wait and not removed:
            removed.extend(temporaries(tmp_path))
            for name in removed:
                os.unlink(tmp_path / name)
        return real_lock(fd, wait)

    monkeypatch.setattr(files, "_lock", lock)
    atomic_write(path, lambda f: f.write(b"new"))
    assert len(removed) == 1
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["model.json"]


# ---------------------------------------------------------------------------
# What a replaced file keeps: mode, owner, extended attributes; symlinks stay links
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444, 0o755], ids=oct)
def test_saving_over_a_file_keeps_its_mode(mode, tmp_path):
    path = tmp_path / "model.json"
    nn.MLP(2, [2, 1], seed=1).save(path)
    os.chmod(path, mode)
    modes_while_writing = []

    def write(f):
        modes_while_writing.append(stat.S_IMODE(os.fstat(f.fileno()).st_mode))
        f.write(b"new")

    atomic_write(path, write)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert modes_while_writing == [mode], "the content went into a file more open than the old one"
    nn.MLP(2, [2, 1], seed=2).save(path)
    assert stat.S_IMODE(path.stat().st_mode) == mode


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root may chown a file")
def test_saving_over_a_file_keeps_its_owner_where_permitted(tmp_path):
    path = tmp_path / "model.json"
    path.write_bytes(b"old")
    os.chown(path, 54321, 54322)
    nn.MLP(2, [2, 1], seed=1).save(path)
    assert (path.stat().st_uid, path.stat().st_gid) == (54321, 54322)


@pytest.mark.skipif(not hasattr(os, "fchown"), reason="no owners on this platform")
def test_where_the_owner_cannot_be_kept_the_group_still_is_and_the_save_succeeds(tmp_path, monkeypatch):
    path = tmp_path / "model.json"
    path.write_bytes(b"old")
    me, group = os.getuid(), os.getgid()
    real_fchown = os.fchown
    calls = []

    def fchown(fd, uid, gid):  # as for a user who is not root: giving the file away is refused
        calls.append((uid, gid))
        if uid not in (-1, me):
            raise PermissionError(1, "Operation not permitted")
        real_fchown(fd, uid, gid)

    stat_result = os.stat(path)
    fake = os.stat_result((stat_result.st_mode, *stat_result[1:4], me + 1, group, *stat_result[6:]))
    real_stat = os.stat
    monkeypatch.setattr(os, "fchown", fchown)
    monkeypatch.setattr(os, "stat", lambda p, **kw: fake if os.fspath(p) == str(path) else real_stat(p, **kw))
    atomic_write(path, lambda f: f.write(b"new"))
    monkeypatch.undo()
    assert path.read_bytes() == b"new"
    assert calls == [(me + 1, group), (-1, group)]
    assert path.stat().st_gid == group


def _xattrs_work(folder):
    probe = folder / "probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.chaingrad-probe", b"1")
    except (AttributeError, OSError):
        return False
    finally:
        probe.unlink()
    return True


def test_saving_over_a_file_keeps_its_extended_attributes(tmp_path):
    # ACLs are extended attributes (system.posix_acl_access): kept the same way.
    if not _xattrs_work(tmp_path):
        pytest.skip("this file system has no user extended attributes")
    path = tmp_path / "model.json"
    path.write_bytes(b"old")
    os.setxattr(path, "user.origin", b"lab notebook 7")
    nn.MLP(2, [2, 1], seed=1).save(path)
    assert os.getxattr(path, "user.origin") == b"lab notebook 7"


@pytest.mark.parametrize("relative", [False, True], ids=["absolute link", "relative link"])
def test_saving_onto_a_symlink_replaces_its_target_atomically_and_keeps_the_link(relative, tmp_path):
    models, links = tmp_path / "models", tmp_path / "links"
    models.mkdir()
    links.mkdir()
    target, link = models / "model.json", links / "current.json"
    nn.MLP(2, [2, 1], seed=1).save(target)
    os.chmod(target, 0o600)
    os.symlink(os.path.relpath(target, links) if relative else target, link)
    beside = []

    def write(f):
        beside.append((temporaries(models), temporaries(links)))
        f.write(b"")

    atomic_write(link, write)
    assert len(beside[0][0]) == 1 and beside[0][1] == [], "the temporary belongs beside the target"
    model = nn.MLP(2, [2, 1], seed=2)
    model.save(link)
    assert os.path.islink(link) and os.readlink(link) == (
        os.path.relpath(target, links) if relative else str(target)
    )
    assert nn.MLP(2, [2, 1], seed=3).load(target).state_dict() == model.state_dict()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(os.listdir(models)) == ["model.json"] and os.listdir(links) == ["current.json"]


def test_saving_through_a_chain_of_symlinks_and_onto_a_dangling_one(tmp_path):
    target = tmp_path / "model.json"
    target.write_bytes(b"old")
    os.symlink(target, tmp_path / "one")
    os.symlink(tmp_path / "one", tmp_path / "two")
    atomic_write(tmp_path / "two", lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new" and os.path.islink(tmp_path / "two")
    os.symlink(tmp_path / "not yet", tmp_path / "dangling")  # as open(link, "w") does: create the target
    atomic_write(tmp_path / "dangling", lambda f: f.write(b"created"))
    assert (tmp_path / "not yet").read_bytes() == b"created" and os.path.islink(tmp_path / "dangling")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_saving_onto_something_that_is_not_a_regular_file_is_refused_and_changes_nothing(tmp_path):
    # Renaming over a FIFO or a device (think of /dev/null) would replace it with a regular file.
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    os.symlink(tmp_path / "fifo", tmp_path / "link")
    for name, kind in [("fifo", "a FIFO"), ("folder", "a folder"), ("link", "a FIFO")]:
        with pytest.raises(ValueError) as info:
            atomic_write(tmp_path / name, lambda f: f.write(b"new"))
        assert (
            str(info.value)
            == f"{tmp_path / name}: not a regular file ({kind}); only regular files are replaced"
        )
    assert stat.S_ISFIFO(os.stat(tmp_path / "fifo").st_mode) and os.listdir(tmp_path / "folder") == []
    assert sorted(os.listdir(tmp_path)) == ["fifo", "folder", "link"]


# ---------------------------------------------------------------------------
# Reading: regular files only, of bounded size
# ---------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_reading_a_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "model.json"
    os.mkfifo(fifo)
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(_error(lambda: read_regular(fifo, 100))))
    thread.start()
    thread.join(10)
    if thread.is_alive():  # blocked waiting for a writer: give it one so the thread ends, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(10)
        pytest.fail("reading a FIFO blocked")
    assert outcome == ["ValueError: " + f"{fifo}: not a regular file (a FIFO); only files are read"]


def _error(call):
    try:
        call()
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return "no error"


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_reading_a_device_is_refused_without_reading_it():
    with pytest.raises(ValueError, match=r"/dev/zero: not a regular file \(a device\)"):
        read_regular("/dev/zero", 10**12)


def test_reading_a_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"not a regular file \(a folder\)"):
        read_regular(tmp_path, 100)


def test_reading_stops_at_the_limit(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_regular(path, 100) == b"x" * 100
    with pytest.raises(ValueError, match="100 bytes is more than the limit of 99 bytes; see here") as info:
        read_regular(path, 99, advice="; see here")
    assert str(path) in str(info.value)


def test_saving_into_a_missing_folder_names_the_path_given_and_writes_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such folder to write the file into: '.*missing/m.json'"):
        nn.MLP(2, [3, 1]).save(tmp_path / "missing" / "m.json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("path", "error", "message"),
    [
        ("", ValueError, "the file path is empty; give a file's name"),
        (3, TypeError, "a file path is a str or a pathlib.Path, not int 3"),
    ],
)
def test_an_empty_or_non_path_is_refused_by_save_and_load_alike(path, error, message, tmp_path):
    model = nn.MLP(2, [3, 1])
    before = model.state_dict()
    with pytest.raises(error, match=message):
        model.save(path)
    with pytest.raises(error, match=message):
        model.load(path)
    assert model.state_dict() == before
