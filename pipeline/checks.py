"""What every job checks before it starts Ray, claims an output or deletes anything, so that a bad argument costs
nothing: every input exists, is JSONL, JSONL.gz or Parquet (or a folder of them), can be read and holds rows; the
output can be written; a model named by a path is there.

Every failure is a `ConfigError` of one line, `ROLE PATH: what is wrong`, which every job prints before exiting 2.
Must never import Ray.
"""

from __future__ import annotations

import gzip
import os
import posixpath
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from pipeline.config import ConfigError
from pipeline.storage import data_files, filesystem, new_run_tag

DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
NOT_DATA = "not JSONL, JSONL.gz or Parquet (named .jsonl, .jsonl.gz or .parquet)"
# What opening, decompressing or decoding a file that is not what its name says raises.
UNREADABLE = (OSError, EOFError, zlib.error, pa.ArrowInvalid)
_SNIFF_BYTES = 1 << 16


def check_inputs(paths: list[str], storage_options: dict[str, Any] | None = None) -> None:
    """Each path must name a data file, or a folder of them (as `pipeline.storage.data_files` lists it), with a row."""
    for path in paths:
        fs, fs_path = filesystem_for("input", path, storage_options)
        try:
            files = data_files(fs, fs_path) if fs.exists(fs_path) else None
        except OSError as err:  # e.g. access denied to a bucket
            raise ConfigError(f"input {path}: {why(err)}") from None
        if files is None:
            raise ConfigError(f"input {path}: no such file or folder")
        if not files:
            raise ConfigError(f"input {path}: the folder holds no data files")
        if what := _job_output(fs, fs_path, path):
            raise ConfigError(f"input {path}: {what}")
        root = fs_path.rstrip("/")
        shown = {f: path.rstrip("/") + f[len(root):] if f != fs_path else path for f in files}
        # Object storage answers one request at a time slowly; a folder of shards is read in parallel.
        with ThreadPoolExecutor(max_workers=min(16, len(files))) as pool:
            rows = list(pool.map(lambda f: _has_rows(fs, f, shown[f]), files))
        if not any(rows):
            raise ConfigError(f"input {path}: holds no rows")


def check_output(url: str, storage_options: dict[str, Any] | None = None, role: str = "output") -> None:
    """The output folder can be written, and checking leaves no trace. A probe is written and removed, since
    permission bits say less than a try (root, bucket policies, read-only mounts); a missing bucket fails, so a
    mistyped bucket name is caught here."""
    fs, fs_path = filesystem_for(role, url, storage_options)
    if fs.isfile(fs_path):
        raise ConfigError(f"{role} {url}: is a file, not a folder")
    if isinstance(fs, LocalFileSystem):
        _check_local_folder(fs_path, url, role)
        return
    probe = posixpath.join(fs_path, f"_probe-{new_run_tag()}")
    try:
        with fs.open(probe, "wb"):
            pass
        fs.rm(probe)
    except OSError as err:
        raise ConfigError(f"{role} {url}: cannot write there: {why(err)}") from None


def check_output_file(url: str, storage_options: dict[str, Any] | None = None) -> None:
    """The output is one file: its folder takes a write and it is not itself a folder."""
    fs, fs_path = filesystem_for("output", url, storage_options)
    if fs.isdir(fs_path):
        raise ConfigError(f"output {url}: is a folder; name the output file")
    check_output(url.rsplit("/", 1)[0] if "/" in url else ".", storage_options)


def check_model(source: str, storage_options: dict[str, Any] | None = None, role: str = "model") -> None:
    """A model named by a path, local or remote, is there. Hub ids and the embedded default are left to the loader:
    there is no cheap way to tell a hub id from a relative path that does not exist."""
    from pipeline.models import EMBEDDED_MODEL

    local = fsspec.core.split_protocol(source)[0] in (None, "file", "local")
    if source == EMBEDDED_MODEL or (local and not source.startswith(("/", "./", "../", "~", "file:"))):
        return
    fs, fs_path = filesystem_for(role, os.path.expanduser(source), storage_options)
    try:
        found = fs.exists(fs_path)
    except OSError as err:
        raise ConfigError(f"{role} {source}: {why(err)}") from None
    if not found:
        raise ConfigError(f"{role} {source}: no such model folder")


def why(err: Exception) -> str:
    """One line: an OSError's own words without its errno and path, which the message already names."""
    text = err.strerror if isinstance(err, OSError) and err.strerror else str(err) or type(err).__name__
    return " ".join(text.split())


def _check_local_folder(path: str, url: str, role: str) -> None:
    existing = path
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"{role} {url}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ConfigError(f"{role} {url}: {existing} is not writable ({why(err)})") from None


def filesystem_for(
    role: str, url: str, storage_options: dict[str, Any] | None
) -> tuple[fsspec.AbstractFileSystem, str]:
    try:
        return filesystem(url, storage_options)
    except (ValueError, ImportError) as err:  # an unknown protocol, or one whose package is missing
        raise ConfigError(f"{role} {url}: {err}") from None


def _job_output(fs: fsspec.AbstractFileSystem, fs_path: str, path: str) -> str | None:
    """What to name instead when `path` is the top of a job's output, where queries, samples and rejects lie side by
    side (the likeliest wrong folder to give): None for any other folder."""
    root, shown = fs_path.rstrip("/"), path.rstrip("/")
    if fs.isdir(f"{root}/kept") and fs.exists(f"{root}/summary.json"):
        return f"a jobs.preprocess output, not one dataset: its queries are {shown}/kept"
    if fs.isdir(f"{root}/teachers") and fs.exists(f"{root}/queries/_SUCCESS"):
        teachers = sorted(t.rstrip("/").rsplit("/", 1)[-1] for t in fs.ls(f"{root}/teachers", detail=False))
        return (f"a jobs.distill output, not one dataset: its samples are {shown}/teachers/TEACHER/accepted (or "
                f"filtered, after jobs.filter) with TEACHER one of {', '.join(teachers)}; its queries are "
                f"{shown}/queries")
    if posixpath.basename(posixpath.dirname(root)) == "teachers" and fs.isdir(f"{root}/accepted"):
        return f"a teacher's folder of a jobs.distill output: its samples are {shown}/accepted (or {shown}/filtered)"
    return None


def _has_rows(fs: fsspec.AbstractFileSystem, path: str, shown: str) -> bool:
    """Whether a data file holds a row; a file that is not what its name says fails the check."""
    if not path.endswith(DATA_SUFFIXES):
        raise ConfigError(f"input {shown}: {NOT_DATA}")
    try:
        with fs.open(path, "rb") as f:
            if path.endswith(".parquet"):
                return pq.ParquetFile(f).metadata.num_rows > 0
            if path.endswith(".gz"):
                with gzip.open(f) as text:
                    return _jsonl_has_rows(text, shown)
            return _jsonl_has_rows(f, shown)
    except UNREADABLE as err:
        raise ConfigError(f"input {shown}: {why(err)}") from None


def _jsonl_has_rows(f: IO[bytes], shown: str) -> bool:
    """A non-blank line makes a row (as `pipeline.loaders.jsonl_lines` splits them); a NUL byte makes a binary."""
    chunk = f.read(_SNIFF_BYTES)
    if b"\0" in chunk:
        raise ConfigError(f"input {shown}: binary content (NUL bytes), not JSONL text")
    while chunk:
        if chunk.strip():
            return True
        chunk = f.read(_SNIFF_BYTES)
    return False
