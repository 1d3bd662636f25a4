"""Parquet datasets on a local disk or object storage, through fsspec, written shard by shard.

A shard becomes visible only when it is complete: locally it is written under `_staging/` and renamed; on object
storage the upload itself is atomic. Shard names carry a per-run tag and a sequence number, so a restarted run never
overwrites what an earlier run committed, and readers see whole shards or nothing.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.config import ConfigError


class Store:
    """A root folder (`/local/path` or `s3://bucket/prefix`) and the filesystem that holds it."""

    def __init__(self, root: str, storage_options: dict[str, Any] | None = None):
        self.fs, path = filesystem(root, storage_options)
        self.root = path.rstrip("/")
        self._local = "file" in _protocols(self.fs)
        self.url = root

    def arrow_filesystem(self) -> pafs.FileSystem:
        """The same filesystem for pyarrow and Ray Data, which take paths without the protocol."""
        return arrow_filesystem(self.fs)

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def exists(self, *parts: str) -> bool:
        return self.fs.exists(self.path(*parts))

    def write_text(self, relpath: str, text: str) -> None:
        self.write_bytes(relpath, text.encode())

    def write_bytes(self, relpath: str, data: bytes) -> None:
        target = self.path(relpath)
        self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        with self.fs.open(target, "wb") as f:
            f.write(data)

    def read_text(self, relpath: str) -> str:
        with self.fs.open(self.path(relpath), "r") as f:
            return f.read()

    def claim(self, config_hash: str, config: dict[str, Any]) -> None:
        """Record the run's config in `config.json`; a folder holding another config's run is refused, so two runs
        never mix, while the same config resumes."""
        if self.exists("config.json"):
            existing = json.loads(self.read_text("config.json"))["config_hash"]
            if existing != config_hash:
                raise ConfigError(
                    f"output: {self.url} holds a run with config hash {existing}, this config is {config_hash}; "
                    "use a new output folder"
                )
            return
        self.write_text("config.json", json.dumps({"config_hash": config_hash, "config": config}, indent=2))

    def shards(self, relpath: str) -> list[str]:
        folder = self.path(relpath)
        # s3fs keeps listings; another process (a resumed run, a second job) may have committed shards since.
        self.fs.invalidate_cache(folder)
        if not self.fs.exists(folder):
            return []
        return sorted(p for p in self.fs.ls(folder, detail=False) if p.endswith(".parquet"))

    def read_table(self, relpath: str, columns: list[str] | None = None) -> pa.Table | None:
        shards = self.shards(relpath)
        if not shards:
            return None
        return pa.concat_tables(pq.read_table(s, columns=columns, filesystem=self.fs) for s in shards)

    def count_rows(self, relpath: str) -> int:
        """Rows in the folder's shards, from their Parquet footers: no data is read."""
        return sum(pq.ParquetFile(s, filesystem=self.fs).metadata.num_rows for s in self.shards(relpath))

    def column_values(self, relpath: str, column: str) -> set:
        table = self.read_table(relpath, columns=[column])
        return set() if table is None else set(table.column(column).to_pylist())

    def remove(self, relpath: str) -> None:
        target = self.path(relpath)
        if self.fs.exists(target):
            self.fs.rm(target, recursive=True)

    def write_shard(self, relpath: str, name: str, table: pa.Table) -> str:
        folder = self.path(relpath)
        target = posixpath.join(folder, name)
        self.fs.makedirs(folder, exist_ok=True)
        if not self._local:
            pq.write_table(table, target, filesystem=self.fs)
            return target
        staging = posixpath.join(folder, "_staging", name)
        self.fs.makedirs(posixpath.dirname(staging), exist_ok=True)
        pq.write_table(table, staging, filesystem=self.fs)
        self.fs.mv(staging, target)
        return target


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """fsspec filesystem and protocol-less path for `url`; storage options apply to remote storage only."""
    protocol = fsspec.core.split_protocol(url)[0] or "file"
    options = storage_options if protocol not in ("file", "local") else None
    return fsspec.core.url_to_fs(url, **(options or {}))


def data_files(fs: fsspec.AbstractFileSystem, path: str) -> list[str]:
    """The files a user's input path names: the file itself, or every file below a folder, sorted. In a folder, names
    starting with `_` or `.` are skipped at any depth: they are markers and staging areas (`_SUCCESS`, `_staging/`)
    that the jobs write beside their shards, never data; so is a `README.md`, a dataset card as `jobs.filter` and
    Hugging Face datasets keep one beside the data."""
    if not fs.isdir(path):
        return [path]
    root = path.rstrip("/")
    return sorted(
        f for f in fs.find(root)
        if not any(part.startswith(("_", ".")) for part in f[len(root):].split("/")) and not f.endswith("/README.md")
    )


def arrow_filesystem(fs: fsspec.AbstractFileSystem) -> pafs.FileSystem:
    if "file" in _protocols(fs):
        return pafs.LocalFileSystem()
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def _protocols(fs: fsspec.AbstractFileSystem) -> set[str]:
    protocol = fs.protocol
    return {protocol} if isinstance(protocol, str) else set(protocol)


class ShardWriter:
    """Buffers records and commits them as Parquet shards of `shard_rows`, or after `flush_seconds`.

    Writers in `commit_after` are flushed before each of this writer's shards, so rows that refer to theirs (a sample
    to its attempts) are never committed ahead of them.
    """

    def __init__(
        self, store: Store, relpath: str, schema: pa.Schema, shard_rows: int, flush_seconds: float,
        run_tag: str | None = None, commit_after: list["ShardWriter"] | None = None,
    ):
        self._store, self._relpath, self._schema = store, relpath, schema
        self._commit_after = commit_after or []
        self._shard_rows, self._flush_seconds = shard_rows, flush_seconds
        self._tag = run_tag or new_run_tag()
        self._buffer: list[dict[str, Any]] = []
        self._sequence = 0
        self._last_flush = time.monotonic()
        self.rows_written = 0

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        self._buffer.extend(rows)
        if len(self._buffer) >= self._shard_rows or time.monotonic() - self._last_flush >= self._flush_seconds:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        for writer in self._commit_after:
            writer.flush()
        table = pa.Table.from_pylist(self._buffer, schema=self._schema)
        self._store.write_shard(self._relpath, f"part-{self._tag}-{self._sequence:05d}.parquet", table)
        self._sequence += 1
        self.rows_written += len(self._buffer)
        self._buffer = []


def new_run_tag() -> str:
    """Sortable by start time and unique across restarts."""
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def replace_with(store: Store, staging: str, names: list[str]) -> None:
    """Replace `names` under the store's root with those in the folder `staging` (relative to the root); a name the
    staging folder lacks is removed. The last name is the marker of a complete output: the old one goes first and the
    new one comes last, so the root holds a marker only while everything beside it is one run's. A rename each on a
    local disk, a copy of each object on object storage (whose folders are only prefixes, so fsspec cannot move one)."""
    *contents, marker = names
    local = "file" in _protocols(store.fs)
    store.remove(marker)
    for name in [*contents, marker]:
        store.remove(name)
        source = store.path(staging, name)
        if not store.fs.exists(source):
            continue
        moves = [source] if local or store.fs.isfile(source) else store.fs.find(source)
        for path in moves:
            store.fs.mv(path, store.path(name) + path[len(source):])


# ---- whole-file outputs ------------------------------------------------------------------------------------------


@contextmanager
def atomic_output(url: str, storage_options: dict[str, Any] | None = None) -> Iterator[str]:
    """A local path to write the whole of `url` to. On a clean exit it becomes `url` at once: renamed from beside it
    locally, uploaded in one put to object storage. On an error nothing appears at `url`, and a file that was there
    is kept."""
    fs, path = filesystem(url, storage_options)
    name = posixpath.basename(path)
    if "file" not in _protocols(fs):
        with tempfile.TemporaryDirectory() as staging:
            local = os.path.join(staging, name)
            yield local
            fs.put_file(local, path)
        return
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:8]}.tmp")  # skipped by readers (`data_files`)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
