"""`jobs.filter` end to end on a distill output built here: GSM8K reference solutions as a teacher's accepted samples,
plus planted ones (a looping response, a paragraph pasted into several responses, an over-long one, a broken one).
The real path: a local Ray cluster, the vLLM perplexity actor (float32, so its perplexities can be checked against
transformers), local disk and a real S3-compatible server (moto). One local run is shared by most assertions; the S3
run resumes from scores copied out of it."""

import json
import math
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from pipeline.config import DistillConfig, FilterConfig, TrainConfig, parse_config
from pipeline.packing import tokenize_conversation
from pipeline.quality import FILTER_REJECT_SCHEMA, FILTERED_SCHEMA
from pipeline.reference_samples import reference_samples
from pipeline.response_format import format_response
from pipeline.schema import SAMPLE_SCHEMA
from pipeline.storage import Store
from tests.conftest import REPO, shared_file
from tests.jobs.test_job_cli import assert_refused, run_job
from tests.tiny_student import tokenizer

TEACHER = "smollm2"
BOILERPLATE = ("Remember that every careful solver double checks each intermediate quantity, writes the units beside "
               "each number, and rereads the question once more before committing to a final answer.")
CONFIG = {
    "max_tokens": 600,
    "ngram": {"n": 20, "max_repeats": 20, "corpus_max_responses": 4},
    "perplexity": {"engine": {"dtype": "float32", "max_model_len": 2048, "enforce_eager": True, "batch_size": 8},
                   "max_batch_tokens": 2048},
    "shard_rows": 8,
    "ray": {"dashboard": False},
}


def with_think(sample, think, suffix):
    return sample.model_copy(update={
        "id": f"{sample.id}-{suffix}", "think": think,
        "messages": [sample.messages[0], sample.messages[1].model_copy(
            update={"content": format_response(think, sample.answer)})],
    })


def build_run(root):
    """A distill output with 16 clean samples and 8 planted ones; returns the expected reason per planted id."""
    samples = [s for s in reference_samples(shared_file("queries/gsm8k_train.jsonl").read_text().splitlines()[:80],
                                            "gsm8k_train")
               if len(tokenize_conversation(tokenizer(), [m.model_dump() for m in s.messages])[0]) <= 250]
    clean, spare = samples[:16], samples[16:]
    planted = [
        (with_think(spare[0], "I add 3 and 4 to get 7. " * 30, "loop"), "ngram_repetition"),
        (with_think(spare[1], "\n".join(s.think for s in spare[2:14]), "long"), "too_long"),
        (with_think(spare[14], "", "broken"), "structure"),
        *[(with_think(s, f"{s.think}\n{BOILERPLATE}", "boilerplate"), "corpus_boilerplate") for s in spare[15:20]],
    ]
    config = parse_config(DistillConfig, {"input": {"paths": ["gsm8k_train.jsonl"]}, "output": str(root),
                                          "teachers": [{"name": TEACHER, "model": "smollm2-135m-instruct"}]})
    store = Store(str(root))
    store.claim(config.config_hash(), config.model_dump(mode="json"))
    rows = [s.model_dump(mode="json") for s in [*clean, *(p for p, _ in planted)]]
    for index, part in enumerate([rows[:12], rows[12:]]):
        store.write_shard(f"teachers/{TEACHER}/accepted", f"part-{index}.parquet",
                          pa.Table.from_pylist(part, schema=SAMPLE_SCHEMA))
    return {s.id for s in clean}, {s.id: reason for s, reason in planted}


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", num_cpus=4, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_run(cluster, tmp_path_factory):
    from actors.filter_run import run_filter

    root = tmp_path_factory.mktemp("filter") / "run"
    clean, planted = build_run(root)
    summary = run_filter(str(root), FilterConfig.model_validate(CONFIG), progress=False)
    return root, clean, planted, summary


def outputs(root):
    teacher = Store(str(root / "teachers" / TEACHER))
    return teacher.read_table("filtered"), teacher.read_table("filter_rejects")


@pytest.mark.slow
def test_planted_samples_are_removed_with_their_reason_and_every_sample_lands_once(local_run):
    root, clean, planted, summary = local_run
    filtered, rejects = outputs(root)
    assert filtered.schema.equals(FILTERED_SCHEMA) and rejects.schema.equals(FILTER_REJECT_SCHEMA)
    assert sorted(filtered.column("id").to_pylist()) == sorted(clean)
    assert dict(zip(rejects.column("id").to_pylist(), rejects.column("filter_reason").to_pylist())) == planted
    details = dict(zip(rejects.column("filter_reason").to_pylist(), rejects.column("filter_detail").to_pylist()))
    assert details["too_long"].endswith("tokens > max_tokens 600")
    assert "> max_repeats 20" in details["ngram_repetition"]
    assert details["structure"] == "the canonical response does not parse: empty_think"
    report = summary["teachers"][0]
    assert report["samples"] == 24 and report["kept"] == 16 and report["scored_now"] == 24
    assert report["rejected"] == {"structure": 1, "too_long": 1, "ngram_repetition": 1, "corpus_boilerplate": 5,
                                  "perplexity": 0}
    written = json.loads((root / "teachers" / TEACHER / "filter_summary.json").read_text())
    assert written["kept"] == 16 and written["distill_config_hash"] == json.loads(
        (root / "config.json").read_text())["config_hash"]
    assert not (root / "teachers" / TEACHER / "_filter_staging").exists()


@pytest.mark.slow
def test_perplexity_equals_a_direct_transformers_computation_over_the_response_only(local_run):
    import torch
    from transformers import AutoModelForCausalLM

    from pipeline.models import materialize_embedded_model

    root, _, _, _ = local_run
    filtered, _ = outputs(root)
    model = AutoModelForCausalLM.from_pretrained(materialize_embedded_model(), dtype=torch.float32).eval()
    tok = tokenizer()
    for row in filtered.slice(0, 3).to_pylist():
        prompt = tok.apply_chat_template(row["messages"][:-1], add_generation_prompt=True, tokenize=False)
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        response_ids = tok(format_response(row["think"], row["answer"]), add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt_ids + response_ids])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
        targets = ids[0, 1:]
        token_logprobs = logprobs[torch.arange(len(targets)), targets][len(prompt_ids) - 1:]
        assert len(token_logprobs) == len(response_ids) == row["response_tokens"]
        assert row["ppl"] == pytest.approx(math.exp(-token_logprobs.mean().item()), rel=1e-3)


@pytest.mark.slow
def test_the_filtered_folder_has_a_dataset_card_and_loads_with_datasets(local_run, tmp_path):
    import datasets

    root, clean, _, _ = local_run
    folder = root / "teachers" / TEACHER / "filtered"
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nconfigs:\n- config_name: default\n  data_files: '*.parquet'")
    assert "| kept (this dataset) | 16 |" in card and "| rejected: corpus_boilerplate | 5 |" in card
    loaded = datasets.load_dataset("parquet", data_files=str(folder / "*.parquet"), split="train",
                                   cache_dir=str(tmp_path))
    assert sorted(loaded["id"]) == sorted(clean) and "ppl" in loaded.column_names


@pytest.mark.slow
def test_training_reads_the_filtered_folder_as_a_source(local_run, tmp_path):
    from actors.train_data import input_files, load_training_data, tokenize_sources

    root, clean, _, _ = local_run
    source = str(root / "teachers" / TEACHER / "filtered")
    config = TrainConfig.model_validate({"model": "smollm2-135m-instruct", "output": str(tmp_path),
                                         "data": {"sources": [{"name": "filtered", "path": source}]}})
    store = Store(config.output)
    tokenize_sources(config, store, input_files(config))
    _, _, counts = load_training_data(config, store, local_leader=True, barrier=lambda: None)
    assert counts["filtered"]["samples"] == counts["filtered"]["kept"] == len(clean)


@pytest.mark.slow
def test_new_thresholds_decide_again_without_scoring(local_run, tmp_path):
    from actors.filter_run import run_filter

    root, _, _, _ = local_run
    copy = tmp_path / "run"
    shutil.copytree(root, copy)
    config = FilterConfig.model_validate({**CONFIG, "perplexity": {**CONFIG["perplexity"], "max_ppl_percentile": 50}})
    report = run_filter(str(copy), config, progress=False)["teachers"][0]
    scores = Store(str(copy / "teachers" / TEACHER)).read_table("filter_scores").column("ppl").to_pylist()
    threshold = float(np.percentile(scores, 50))
    filtered, rejects = outputs(copy)
    assert report["scored_now"] == 0
    assert report["thresholds"]["max_ppl"] == pytest.approx(threshold)
    assert max(filtered.column("ppl").to_pylist()) <= threshold
    dropped = [row for row in rejects.to_pylist() if row["filter_reason"] == "perplexity"]
    assert dropped and all(row["ppl"] > threshold for row in dropped)
    assert report["rejected"]["perplexity"] == len(dropped) and report["kept"] == 16 - len(dropped)


@pytest.mark.slow
def test_other_scoring_settings_score_everything_again(local_run, tmp_path, capsys):
    from actors.filter_run import run_filter

    root, clean, _, _ = local_run
    copy = tmp_path / "run"
    shutil.copytree(root, copy)
    report = run_filter(str(copy), FilterConfig.model_validate({**CONFIG, "perplexity": None}),
                        progress=False)["teachers"][0]
    assert "filter_scores were made with other scoring settings; scoring again" in capsys.readouterr().out
    assert report["scored_now"] == 24 and report["kept"] == len(clean)
    filtered, _ = outputs(copy)
    assert filtered.column("ppl").null_count == filtered.num_rows


@pytest.mark.slow
def test_a_run_on_object_storage_resumes_scoring_where_it_stopped(local_run, s3_server):
    import s3fs

    from actors.filter_run import run_filter

    root, clean, planted, _ = local_run
    fs = s3fs.S3FileSystem(**s3_server)
    url = "s3://distillery-test/filter-run"
    teacher = root / "teachers" / TEACHER
    fs.put(str(root / "config.json"), f"{url}/config.json")
    fs.put(str(teacher / "accepted") + "/", f"{url}/teachers/{TEACHER}/accepted/", recursive=True)
    # A run killed in phase 1: its marker and first committed shard of scores.
    first_shard = sorted((teacher / "filter_scores").glob("*.parquet"))[0]
    fs.put(str(teacher / "filter_scores" / "_scoring.json"), f"{url}/teachers/{TEACHER}/filter_scores/_scoring.json")
    fs.put(str(first_shard), f"{url}/teachers/{TEACHER}/filter_scores/{first_shard.name}")
    already = pq.read_table(first_shard).num_rows

    config = FilterConfig.model_validate({**CONFIG, "storage_options": s3_server})
    report = run_filter(url, config, progress=False)["teachers"][0]
    assert 0 < already < 24 and report["scored_now"] == 24 - already
    store = Store(f"{url}/teachers/{TEACHER}", s3_server)
    assert store.exists(f"filter_scores/{first_shard.name}")
    assert sorted(store.column_values("filtered", "id")) == sorted(clean)
    rejects = store.read_table("filter_rejects")
    assert dict(zip(rejects.column("id").to_pylist(), rejects.column("filter_reason").to_pylist())) == planted
    assert store.exists("filtered/README.md") and store.exists("filter_summary.json")


@pytest.mark.parametrize(
    "make, problem",
    [
        pytest.param(lambda root: root / "missing", "no such folder", id="missing"),
        pytest.param(lambda root: root, "not a distill output (no config.json)", id="not-a-distill-output"),
    ],
)
def test_a_bad_run_folder_is_refused_before_ray_starts(tmp_path, make, problem):
    run = make(tmp_path)
    assert_refused(run_job("jobs.filter", "--run", str(run)), f"--run {run}", problem)


def test_an_unknown_teacher_is_refused_before_ray_starts(tmp_path):
    config = parse_config(DistillConfig, {"input": {"paths": ["x.jsonl"]}, "output": str(tmp_path),
                                          "teachers": [{"name": TEACHER, "model": "smollm2-135m-instruct"}]})
    Store(str(tmp_path)).claim(config.config_hash(), config.model_dump(mode="json"))
    result = run_job("jobs.filter", "--run", str(tmp_path), "--teachers", "nobody")
    assert_refused(result, "--teachers nobody", f"not a teacher of {tmp_path} (it has {TEACHER})")
