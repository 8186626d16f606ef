"""atomic_write: the old file or the new one, never half of one; ordinary permissions."""

import os

import pytest

from chaingrad.files import atomic_write


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
