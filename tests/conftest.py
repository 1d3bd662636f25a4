"""Shared fixtures: the real data folder, and a real S3-compatible server (moto) on loopback."""

from __future__ import annotations

import gzip
import os
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Tests that start a one-node cluster in this process list Parquet folders as a job's local cluster does
# (actors/cluster.py): with one footer-reading actor, not Ray Data's 32.
os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", "1")
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_file(relpath: str) -> Path:
    """A file from ../shared/data; tests that need one skip when the folder is absent (a user's checkout)."""
    path = SHARED_DATA / relpath
    if not path.exists():
        pytest.skip(f"needs {path}")
    return path


def descendants_named(pid: int, fragment: str) -> list[int]:
    """Processes below `pid` (a job's driver: its Ray cluster, actors, engines, sandboxes) whose command line holds
    `fragment`; other jobs on the machine are left alone."""
    import psutil

    found = []
    for process in psutil.Process(pid).children(recursive=True):
        try:
            if fragment in " ".join(process.cmdline()):
                found.append(process.pid)
        except psutil.Error:
            pass
    return found


def assert_chromium_renders(page: Path, shot: Path, height: int) -> None:
    """Headless Chromium (Debian's package) screenshots `page`: text on a light page, not a blank image. Skips where
    chromium is not installed."""
    import shutil
    import subprocess

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    f"--window-size=1280,{height}", f"file://{page}"], capture_output=True, timeout=120, check=True)
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1280, height)
        colours = image.convert("L").getextrema()
    assert colours[0] < 64 and colours[1] > 192, "text on a light page, not a blank image"


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1, with a bucket `distillery-test`; yields fsspec storage options."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"endpoint_url": f"http://{host}:{port}", "key": "testing", "secret": "testing"}
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("distillery-test")
    yield options
    server.stop()


def cut_off_gzip(lines: int) -> bytes:
    """A gzipped JSONL file of `lines` queries cut off at half its bytes, as a copy that stopped partway leaves it.
    The prompts are random hex (seeded), so the compressed bytes spread evenly over the lines."""
    rng = random.Random(lines)
    line = b'{"id": "q%d", "category": "general", "prompt": "%s"}\n'
    data = gzip.compress(b"".join(line % (i, rng.randbytes(24).hex().encode()) for i in range(lines)))
    return data[: len(data) // 2]
