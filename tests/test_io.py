"""Atomic writes keep the old file or folder when a write fails, and leave no temporary behind."""

from __future__ import annotations

import pytest

from sisgan import io


def test_atomic_write_replaces_whole(tmp_path):
    path = tmp_path / "sub" / "a.json"
    io.write_json(path, {"x": 1})
    io.write_json(path, {"x": 2})
    assert path.read_text() == '{\n  "x": 2\n}\n'
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.txt"
    io.write_text(path, "old")

    def half(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        io.atomic_write(path, half)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_dir_publishes_or_keeps(tmp_path):
    final = tmp_path / "raw"
    with io.atomic_dir(final) as tmp:
        (tmp / "one").write_text("1")
    assert [p.name for p in final.iterdir()] == ["one"]
    with pytest.raises(RuntimeError), io.atomic_dir(final) as tmp:
        (tmp / "two").write_text("2")
        raise RuntimeError("interrupted")
    assert [p.name for p in final.iterdir()] == ["one"]  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # no temporary folder left
    with io.atomic_dir(final) as tmp:
        (tmp / "three").write_text("3")
    assert [p.name for p in final.iterdir()] == ["three"]  # replaced whole
