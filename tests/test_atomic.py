"""ticketlab.atomic: a destination is either replaced whole or left exactly as it was."""

from __future__ import annotations

import pytest

from ticketlab.atomic import atomic_file, write_atomic


def test_write_atomic_creates_folders_and_replaces_whole_files(tmp_path):
    dest = tmp_path / "new" / "folder" / "report.md"
    write_atomic(dest, "první\n")  # text goes out as UTF-8
    assert dest.read_bytes() == "první\n".encode()
    write_atomic(dest, b"\x00\x01")
    assert dest.read_bytes() == b"\x00\x01"
    assert [p.name for p in dest.parent.iterdir()] == ["report.md"]


def test_an_error_leaves_the_old_file_and_no_temporary_file(tmp_path):
    dest = tmp_path / "mask.pt"
    dest.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_file(dest) as out:
        out.write(b"half of the new")
        raise KeyboardInterrupt
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["mask.pt"]
