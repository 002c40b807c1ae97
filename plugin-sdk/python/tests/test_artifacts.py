"""Artifacts (contract 0.4): written and read through the host services, in chunks."""

import json

import pytest

from plexus_sdk import Context, ErrorKind, Plugin, PluginError
from plexus_sdk.testing import TestHost

plugin = Plugin("test.artifacts", version="0.1.0")


@plugin.operation
def put(ctx: Context, name: str, size: int) -> dict:
    """Writes `size` bytes as artifact `name`."""
    with ctx.create_artifact(name, "application/octet-stream") as out:
        for i in range(size // 1000):
            out.write(bytes([i % 251]) * 1000)
    return out.reference


@plugin.operation
def measure(ctx: Context, artifact: dict) -> dict:
    """Reads an artifact 64 KiB at a time."""
    reader = ctx.open_artifact(artifact)
    total, chunks = 0, 0
    while chunk := reader.read(64 << 10):
        total += len(chunk)
        chunks += 1
    return {"bytes": total, "chunks": chunks}


@plugin.operation
def rows(ctx: Context, rows: object, name: str = "") -> dict:
    """Reads rows inline or from an artifact; writes them as one when `name` is given."""
    read = ctx.read_rows(rows)
    out = {"count": len(read)}
    if name:
        out["artifact"] = ctx.write_rows(name, read)
    return out


def test_an_artifact_is_written_and_read_back_in_chunks():
    host = TestHost(plugin)
    reference = host.call("put", {"name": "blob", "size": 3_000_000})
    assert reference["name"] == "blob" and reference["bytes"] == 3_000_000
    assert reference["artifact"].startswith("sha256:") and host.written == [reference]
    assert len(host.artifacts[reference["artifact"]]) == 3_000_000
    measured = host.call("measure", {"artifact": reference})
    assert measured == {"bytes": 3_000_000, "chunks": -(-3_000_000 // (64 << 10))}


def test_rows_go_by_reference_as_json_lines():
    host = TestHost(plugin)
    written = host.call("rows", {"rows": [{"a": 1}, {"a": 2}], "name": "rows"})
    reference = written["artifact"]
    assert reference["media_type"] == "application/x-ndjson"
    assert host.artifacts[reference["artifact"]] == b'{"a":1}\n{"a":2}\n'
    assert host.call("rows", {"rows": reference}) == {"count": 2}


def test_an_unknown_artifact_or_a_bad_name_is_refused():
    host = TestHost(plugin)
    forged = {"artifact": "sha256:" + "0" * 64, "name": "x", "bytes": 1}
    with pytest.raises(PluginError) as e:
        host.call("measure", {"artifact": forged})
    assert e.value.kind == ErrorKind.NOT_FOUND
    with pytest.raises(PluginError) as e:
        host.call("put", {"name": "../x", "size": 10})
    assert e.value.kind == ErrorKind.INVALID_INPUT
    assert json.loads(json.dumps(host.written)) == []


@plugin.operation
def lines(ctx: Context, artifact: dict) -> dict:
    """Counts an artifact's lines and checks each one's length."""
    count, lengths = 0, set()
    for line in ctx.open_artifact(artifact):
        count += 1
        lengths.add(len(line))
    rest = ctx.open_artifact(artifact).read()
    return {"lines": count, "lengths": sorted(lengths), "bytes": len(rest)}


def test_lines_across_chunk_boundaries_come_whole():
    host = TestHost(plugin)
    data = (b"x" * 99 + b"\n") * 30_000 + b"tail"
    reference = host.put_artifact("lines", data)
    assert host.call("lines", {"artifact": reference}) == {"lines": 30_001, "lengths": [4, 100], "bytes": len(data)}
