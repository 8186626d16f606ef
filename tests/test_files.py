"""files: atomic writes (the old file or the new one, never half of one, even when the process is
killed; mode and symlinks kept; names that fit) and bounded reads of regular files."""

import builtins
import os
import re
import select
import signal
import stat
import subprocess
import sys
import threading

import pytest
from refusals import state

from chaingrad import nn
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
# What a replaced file keeps: its mode; symlinks stay links
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


# ---------------------------------------------------------------------------
# Faults while saving: the previous file survives
# ---------------------------------------------------------------------------


def _params(model):
    return [p.data for p in model.parameters()]


def _half_writes(real_open):
    """An open() whose files for writing write half of what they are given, then fail as a full
    disk does."""

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def write(self, text):
            self.f.write(text[: len(text) // 2])
            self.f.flush()
            raise OSError(28, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return HalfWriter(f) if set(mode) & set("wxa+") else f

    return fake_open


def _raise(error):
    def fail(*args, **kwargs):
        raise error

    return fail


FAULTS = {  # (module, function, its replacement given the real one, the error save passes on)
    "write fails halfway": (builtins, "open", _half_writes, OSError),
    "fsync fails": (os, "fsync", lambda real: _raise(OSError(5, "Input/output error")), OSError),
    "Ctrl-C at fsync": (os, "fsync", lambda real: _raise(KeyboardInterrupt()), KeyboardInterrupt),
    "rename fails": (os, "replace", lambda real: _raise(OSError(18, "Invalid cross-device link")), OSError),
    "Ctrl-C at rename": (os, "replace", lambda real: _raise(KeyboardInterrupt()), KeyboardInterrupt),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failed_save_keeps_the_old_file_loadable_and_leaves_no_temp_file(fault, tmp_path, monkeypatch):
    path = tmp_path / "model.json"
    old = nn.MLP(2, [8, 8, 1], seed=1)
    old.save(path)
    saved = path.read_bytes()
    new = nn.MLP(2, [8, 8, 1], seed=2)
    before = state(new)
    module, name, make, error = FAULTS[fault]
    monkeypatch.setattr(module, name, make(getattr(module, name)))
    with pytest.raises(error):
        new.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == saved
    assert os.listdir(tmp_path) == ["model.json"], "a temp file was left behind"
    assert _params(nn.MLP(2, [8, 8, 1], seed=3).load(path)) == _params(old)
    assert state(new) == before


# The child saves a big model over the old file and stops in the middle (halfway through writing
# the data, or between writing and renaming), tells the parent, and waits to be killed.
CHILD = """
import builtins, os, sys, time
from chaingrad import nn

path, phase = sys.argv[1], sys.argv[2]


def stop_here():
    print(phase, flush=True)
    time.sleep(600)


class SlowWriter:
    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.f.__exit__(*exc)

    def write(self, text):
        half = len(text) // 2
        self.f.write(text[:half])
        self.f.flush()
        os.fsync(self.f.fileno())
        stop_here()
        self.f.write(text[half:])

    def __getattr__(self, name):
        return getattr(self.f, name)


if phase == "writing":
    real_open = builtins.open

    def slow_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return SlowWriter(f) if set(mode) & set("wxa+") else f

    builtins.open = slow_open
else:
    real_replace = os.replace
    os.replace = lambda *args: (stop_here(), real_replace(*args))
nn.MLP(2, [256, 256, 1], seed=2).save(path)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("phase", ["writing", "renaming"])
def test_killing_a_process_while_it_saves_keeps_the_old_file(phase, tmp_path):
    path = tmp_path / "model.json"
    old = nn.MLP(2, [256, 256, 1], seed=1)
    old.save(path)
    saved = path.read_bytes()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), phase],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([child.stdout], [], [], 120)
        said = child.stdout.readline().strip() if ready else ""
        assert said == phase, f"the child did not reach the {phase} step: {child.poll()} {said!r}"
        (temp,) = [p for p in tmp_path.iterdir() if p.name != "model.json"]
        written = temp.stat().st_size
        assert 0 < written < len(saved) if phase == "writing" else written > len(saved) // 2
        child.kill()  # SIGKILL: no cleanup runs
        assert child.wait(60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(60)
        child.stdout.close()
        child.stderr.close()
    assert path.read_bytes() == saved
    assert _params(nn.MLP(2, [256, 256, 1], seed=3).load(path)) == _params(old)
    if phase == "writing":  # the half-written temp file is no model: loading it is a clear error
        with pytest.raises(ValueError, match="truncated"):
            nn.MLP(2, [256, 256, 1], seed=3).load(temp)
