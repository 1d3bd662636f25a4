"""`jobs.train` on the real path: Ray Train's TorchTrainer with 2 CPU workers over gloo, DeepSpeed ZeRO-3 (and FSDP2),
a tiny Llama with SmolLM2's chat template, GSM8K reference solutions from two sources with mixing weights, checkpoints
on a real S3-compatible server (moto). One local Ray cluster serves every run; the killed run is a separate driver
process that joins it. Slow: several training runs and one vLLM engine start."""

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pytest
import ray
import yaml

from pipeline.config import TrainConfig
from pipeline.packing import tokenize_conversation
from pipeline.reference_samples import reference_samples
from pipeline.schema import SAMPLE_SCHEMA
from pipeline.storage import Store
from tests.conftest import REPO, shared_file
from tests.tiny_student import save_tiny_student, tokenizer

pytestmark = pytest.mark.slow

NOTHING_DROPPED = {"over_max_seq_len": 0, "no_assistant_tokens": 0, "untokenizable": 0}
STEPS = 8  # 24 samples of source a + half of source b's 16, in steps of 8 samples, for 2 epochs


@pytest.fixture(scope="module")
def cluster():
    # Several Ray clusters share this host: keep Ray Train's placement-group cleaner off the others' state API.
    os.environ.setdefault("RAY_API_SERVER_ADDRESS", "http://127.0.0.1:9")
    ray.init(address="local", num_cpus=5, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def base_config(tmp_path_factory):
    """Short GSM8K solutions (≤ 200 tokens) as two teachers' accepted samples, and a tiny student."""
    root = tmp_path_factory.mktemp("train")
    lines = shared_file("queries/gsm8k_train.jsonl").read_text().splitlines()[:200]
    short = [s for s in reference_samples(lines, "gsm8k_train")
             if len(tokenize_conversation(tokenizer(), [m.model_dump() for m in s.messages])[0]) <= 200]
    for name, samples in [("a", short[:24]), ("b", short[24:40])]:
        table = pa.Table.from_pylist([s.model_dump(mode="json") for s in samples], schema=SAMPLE_SCHEMA)
        Store(str(root / name / "accepted")).write_shard("", "part-0.parquet", table)
    return {
        "model": str(save_tiny_student(root / "student")),
        "data": {"sources": [{"name": "a", "path": str(root / "a" / "accepted")},
                             {"name": "b", "path": str(root / "b" / "accepted"), "weight": 0.5}],
                 "max_seq_len": 256, "seed": 3},
        "output": str(root / "unused"),
        "epochs": 2,
        "global_batch_samples": 8,
        "precision": "fp32",  # exact comparisons between runs
        "attn_implementation": "eager",
        "optimizer": {"lr": 3e-3, "warmup_ratio": 0.1},
        "strategy": {"kind": "deepspeed", "zero_stage": 3},
        "scaling": {"num_workers": 2},
        "checkpoint_every_steps": 2,
        "ray": {"dashboard": False},
    }


def test_the_tokenized_data_is_the_chat_template_with_its_assistant_mask(cluster, base_config, tmp_path):
    from actors.train_data import input_files, load_training_data, tokenize_sources

    source = base_config["data"]["sources"][0]
    config = TrainConfig.model_validate({**base_config, "output": str(tmp_path), "data": {"sources": [source]}})
    store = Store(config.output)
    tokenize_sources(config, store, input_files(config))
    samples, _, counts = load_training_data(config, store, local_leader=True, barrier=lambda: None)
    accepted = sorted(Store(source["path"]).read_table("").to_pylist(), key=lambda row: row["id"])
    assert counts == {"a": {"samples": 24, "kept": 24, **NOTHING_DROPPED}}
    for index, row in enumerate(accepted):
        ids, mask = samples.tokens(index)
        assert (ids.tolist(), mask.tolist()) == tokenize_conversation(tokenizer(), row["messages"])


def train(cluster, base, output, **changes):
    from actors.train_run import run_train

    return run_train(TrainConfig.model_validate({**base, "output": output, **changes}))


def losses(summary):
    return {row["step"]: row["loss"] for row in summary["steps"]}


@pytest.fixture(scope="module")
def zero3_on_s3(cluster, base_config, s3_server):
    output = "s3://distillery-test/train-zero3"
    summary = train(cluster, {**base_config, "storage_options": s3_server}, output)
    return summary, Store(output, s3_server)


def test_loss_falls(zero3_on_s3):
    summary, _ = zero3_on_s3
    curve = [row["loss"] for row in summary["steps"]]
    assert len(curve) == STEPS == summary["plan"]["total_steps"]
    assert curve[-1] < curve[0] - 1.0, curve
    assert summary["data"] == {
        "a": {"samples": 24, "kept": 24, **NOTHING_DROPPED},
        "b": {"samples": 16, "kept": 16, **NOTHING_DROPPED},
    }


def test_each_step_reports_throughput_mfu_and_packing(zero3_on_s3):
    summary, _ = zero3_on_s3
    for row in summary["steps"]:
        assert row["tokens_per_s"] > 0 and 0 < row["mfu"] < 1 and 0 < row["packing_efficiency"] <= 1
        assert row["packs"] >= 8 * 120 // 256, "8 samples of 120-200 tokens need several 256-token packs"
    assert 0.5 < summary["packing_efficiency"] <= 1


def test_checkpoints_and_the_exported_model_are_in_object_storage(zero3_on_s3):
    _, store = zero3_on_s3
    checkpoints = sorted(p.rsplit("/", 1)[1] for p in store.fs.ls(store.path("checkpoints")))
    assert checkpoints[-2:] == ["step_00000006", "step_00000008"], "the last two of every 2 steps are kept"
    model = {p.rsplit("/", 1)[1] for p in store.fs.ls(store.path("model"))}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= model
    assert json.loads(store.read_text("summary.json"))["steps"][-1]["step"] == STEPS
    assert store.fs.cat(store.path("plots/training.png")).startswith(b"\x89PNG")


def test_the_nodes_copy_of_the_data_is_removed_when_training_ends(base_config, zero3_on_s3, s3_server):
    from actors.train_data import local_copy_dir

    _, store = zero3_on_s3
    config = TrainConfig.model_validate({**base_config, "storage_options": s3_server, "output": store.url})
    copy = local_copy_dir(config, store)
    assert copy.parent.is_dir() and not copy.exists()


def test_fsdp2_with_one_pack_per_step_trains_the_same_model(cluster, base_config, zero3_on_s3, tmp_path):
    """FSDP2 with 2048-token packs (each step is one pack: one rank trains it, the other runs a filler) against
    ZeRO-3 with 256-token packs (several per rank): the token-mean loss and the update do not depend on the strategy
    or on how a step is split over ranks and micro-batches, so the losses match at every step. Gradient norms check
    the loss scale too, which Adam alone would hide."""
    reference, _ = zero3_on_s3
    fsdp = train(cluster, base_config, str(tmp_path / "fsdp2"), strategy={"kind": "fsdp2"},
                 data={**base_config["data"], "max_seq_len": 2048})
    assert all(row["packs"] == 1 for row in fsdp["steps"])
    for ours, theirs in zip(fsdp["steps"], reference["steps"], strict=True):
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-4)
        assert ours["grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-3)
    assert os.path.exists(tmp_path / "fsdp2" / "model" / "model.safetensors")


def test_a_killed_run_resumes_mid_epoch_with_the_same_losses(cluster, base_config, zero3_on_s3, tmp_path):
    reference, _ = zero3_on_s3
    config_path = tmp_path / "train.yaml"
    config_path.write_text(yaml.safe_dump({**base_config, "output": "out"}))  # relative to the driver's directory
    driver = subprocess.Popen(
        [sys.executable, "-m", "jobs.train", "--config", str(config_path)], cwd=tmp_path,
        env={**os.environ, "RAY_ADDRESS": cluster, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    snapshot = tmp_path / "out" / "checkpoints" / "checkpoint_manager_snapshot.json"
    deadline = time.monotonic() + 600
    while not (snapshot.exists() and "step_00000002" in snapshot.read_text()):
        assert driver.poll() is None, driver.stdout.read()[-4000:]
        assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()

    resumed = train(cluster, base_config, str(tmp_path / "out"))
    start = resumed["plan"]["resumed_at"]
    assert 2 <= start < STEPS, "killed mid-run, in the first epoch's steps or just after"
    expected = {step: loss for step, loss in losses(reference).items() if step > start}
    assert losses(resumed) == pytest.approx(expected, rel=1e-6)


def test_the_exported_model_loads_in_vllm_and_generates(zero3_on_s3, tmp_path):
    _, store = zero3_on_s3
    local = tmp_path / "model"
    store.fs.get(store.path("model") + "/", str(local), recursive=True)
    script = (
        "from vllm import LLM, SamplingParams\n"
        "if __name__ == '__main__':\n"
        f"    llm = LLM({str(local)!r}, max_model_len=512, enforce_eager=True, dtype='bfloat16')\n"
        "    out = llm.chat([{'role': 'user', 'content': 'What is 2 + 3?'}],\n"
        "                   SamplingParams(temperature=0, max_tokens=8, ignore_eos=True), use_tqdm=False)\n"
        "    print('GENERATED', len(out[0].outputs[0].token_ids))\n"
    )
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600, check=False)
    assert "GENERATED 8" in result.stdout, result.stdout[-2000:] + result.stderr[-4000:]
