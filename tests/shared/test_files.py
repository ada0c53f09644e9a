"""The core's file writing and hashing (files.py) and the one-line error exit (errors.py)."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from modeldeploy_runtime.errors import EXIT_USAGE, report_error
from modeldeploy_runtime.files import (
    CHUNK_BYTES,
    DigestMismatchError,
    file_chunks,
    sha256_bytes,
    sha256_file,
    write_atomically,
)


def _leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.endswith(".partial"))


def test_write_replaces_the_target_whole_and_returns_its_digest(tmp_path: Path) -> None:
    target = tmp_path / "model.joblib"
    target.write_bytes(b"old")
    digest = write_atomically(target, [b"new ", b"bytes"])
    assert target.read_bytes() == b"new bytes"
    assert digest == hashlib.sha256(b"new bytes").hexdigest()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert _leftovers(tmp_path) == []


def test_create_only_write_never_replaces(tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    write_atomically(target, [b"first"], replace=False)
    with pytest.raises(FileExistsError):
        write_atomically(target, [b"second"], replace=False)
    assert target.read_bytes() == b"first"
    assert _leftovers(tmp_path) == []


def test_wrong_digest_leaves_the_target_alone(tmp_path: Path) -> None:
    target = tmp_path / "model.joblib"
    target.write_bytes(b"old")
    expected = sha256_bytes(b"something else")
    with pytest.raises(DigestMismatchError) as raised:
        write_atomically(target, [b"new"], expected_sha256=expected)
    assert raised.value.expected == expected
    assert raised.value.actual == sha256_bytes(b"new")
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_a_source_failing_midway_leaves_no_part_behind(tmp_path: Path) -> None:
    def interrupted() -> Iterator[bytes]:
        yield b"half"
        raise ConnectionError("download interrupted")

    target = tmp_path / "model.joblib"
    with pytest.raises(ConnectionError):
        write_atomically(target, interrupted())
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_file_digest_streams_over_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * (CHUNK_BYTES // 256 * 2 + 3)  # more than two chunks
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert [len(chunk) for chunk in file_chunks(path)][:2] == [CHUNK_BYTES, CHUNK_BYTES]
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_report_error_prints_one_line_and_returns_the_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert report_error("bad value\n  expected another", EXIT_USAGE) == EXIT_USAGE
    assert capsys.readouterr().err == "modeldeploy-runtime: error: bad value expected another\n"
