"""Read what wandb wrote for an offline run: its `run-<id>.wandb` transaction log, decoded with wandb's own protobuf
schema (`wandb.proto.wandb_internal_pb2.Record`). wandb ships no Python reader for the file since its core moved to
Go; the container is LevelDB's log format, which wandb's former `datastore.py` documented:

    header  "<4sHB"  b":W&B", magic 0xBEE1, version 0              (7 bytes, once)
    blocks  32 KiB; each record chunk: "<IHB" crc32, length, type (FULL 1, FIRST 2, MIDDLE 3, LAST 4) + payload;
            a block tail shorter than a chunk header is zero padding.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path

BLOCK, HEADER = 32768, 7


def records(path: Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), "not a wandb transaction log"
    pos, chunks = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0 and length == 0:  # zero padding up to the block's end
            pos += left
            continue
        if pos + HEADER + length > len(data):  # a chunk still being written: stop at the last complete one
            return
        payload = data[pos + HEADER:pos + HEADER + length]
        assert zlib.crc32(bytes([kind]) + payload) & 0xFFFFFFFF == crc, f"corrupt chunk at byte {pos}"
        pos += HEADER + length
        chunks += payload
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(chunks)
            chunks = b""
            yield record


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def read_run(run_dir: Path, wait_s: float = 60.0) -> dict:
    """→ {"history": [row dicts], "summary": {key: value}, "config": {key: value}} of one offline run folder.

    wandb's writer is a separate process (wandb-core) that may still be flushing when `finish()` returns on a busy
    machine, so this waits (up to wait_s) for the run's closing "exit" record before reading."""
    (log,) = Path(run_dir).glob("run-*.wandb")
    deadline = time.monotonic() + wait_s
    while not any(r.WhichOneof("record_type") == "exit" for r in records(log)):
        assert time.monotonic() < deadline, f"{log} has no exit record after {wait_s:.0f} s"
        time.sleep(0.2)
    history, summary, config = [], {}, {}
    for r in records(log):
        kind = r.WhichOneof("record_type")
        if kind == "history":
            history.append({_key(i): json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary":
            summary |= {_key(i): json.loads(i.value_json) for i in r.summary.update}
        elif kind in ("config", "run"):
            update = r.config.update if kind == "config" else r.run.config.update
            config |= {_key(i): json.loads(i.value_json) for i in update}
    return {"history": history, "summary": summary, "config": config}
