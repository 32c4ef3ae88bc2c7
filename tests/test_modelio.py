"""Outputs: only new paths or regular files, symbolic links written through, the umask
respected, nothing half-written; models from files checked on the way in."""

from __future__ import annotations

import os
import stat

import pytest

from mpqc.errors import ModelError, OutputError
from mpqc.modelio import atomic_write_bytes, check_output, load_model


def test_writes_through_a_symlink_and_keeps_it(tmp_path):
    target = tmp_path / "real.onnx"
    target.write_bytes(b"old")
    link = tmp_path / "link.onnx"
    link.symlink_to(target)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o640


@pytest.mark.parametrize("path", ["/dev/null", "/dev/zero"])
def test_devices_are_never_replaced(path):
    before = os.stat(path).st_mode
    with pytest.raises(OutputError, match="not a regular file"):
        atomic_write_bytes(path, b"x")
    assert os.stat(path).st_mode == before and stat.S_ISCHR(before)


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OutputError, match="No space left"):
        atomic_write_bytes(tmp_path / "m.onnx", b"x")
    assert list(tmp_path.iterdir()) == []


def test_check_output_creates_nothing(tmp_path):
    check_output(tmp_path / "deep" / "er" / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_models_must_be_regular_files(tmp_path):
    with pytest.raises(ModelError, match="not a regular file"):
        load_model("/dev/null")
    with pytest.raises(ModelError, match="directory"):
        load_model(tmp_path)
