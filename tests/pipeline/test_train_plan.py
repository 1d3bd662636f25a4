"""The training plan: a fixed number of samples per optimizer step, mixed by weight, packed and split evenly over
ranks, in an order that depends only on (seed, epoch); and the learning-rate schedule."""

import numpy as np
import pytest

from pipeline.train_plan import Source, TrainPlan, epoch_order, split_over_ranks, trainable, warmup_cosine_lr

LENGTHS = np.random.default_rng(1).integers(20, 400, size=100)
TEACHER_A = Source("a", np.arange(0, 60), 1.0)
TEACHER_B = Source("b", np.arange(60, 100), 1.0)


def plan(**overrides):
    args = {"lengths": LENGTHS, "sources": [TEACHER_A, TEACHER_B], "global_batch_samples": 16, "max_seq_len": 512,
            "world_size": 2, "epochs": 2, "seed": 0}
    return TrainPlan(**{**args, **overrides})


def test_the_same_seed_and_epoch_give_the_same_order_and_epochs_differ():
    assert (epoch_order([TEACHER_A, TEACHER_B], 7, 0) == epoch_order([TEACHER_A, TEACHER_B], 7, 0)).all()
    assert not (epoch_order([TEACHER_A, TEACHER_B], 7, 0) == epoch_order([TEACHER_A, TEACHER_B], 7, 1)).all()
    assert sorted(epoch_order([TEACHER_A, TEACHER_B], 7, 0)) == list(range(100))


@pytest.mark.parametrize(
    "weight, per_sample_counts",
    [(2.0, {2}), (1.0, {1}), (0.5, {0, 1}), (1.5, {1, 2})],
    ids=["twice", "once", "half", "one-and-a-half"],
)
def test_mixing_weights(weight, per_sample_counts):
    order = epoch_order([TEACHER_A, Source("b", TEACHER_B.indices, weight)], seed=3, epoch=0)
    counts = np.bincount(order, minlength=100)
    assert set(counts[:60]) == {1}
    assert set(counts[60:]) == per_sample_counts
    assert counts[60:].sum() == round(weight * 40)


def test_every_step_consumes_the_global_batch_each_sample_once_in_every_epoch():
    p = plan()
    assert p.steps_per_epoch == 100 // 16 and p.total_steps == 2 * 6
    for epoch in range(2):
        seen = []
        for step in range(epoch * 6, (epoch + 1) * 6):
            per_rank = p.step(step)
            samples = [i for rank in per_rank for micro_batch in rank for i in micro_batch]
            assert sorted(samples) == sorted(p.step_samples(step).tolist())
            assert len(samples) == 16
            seen += samples
        assert len(set(seen)) == 96, "an epoch's last partial step (4 samples) is dropped"


def test_ranks_get_the_same_number_of_micro_batches_and_packs_fit():
    p = plan(world_size=3, max_seq_len=600)
    for step in range(p.total_steps):
        per_rank = p.step(step)
        assert len({len(rank) for rank in per_rank}) == 1
        assert all(LENGTHS[mb].sum() <= 600 for rank in per_rank for mb in rank)


def test_a_resumed_run_recomputes_the_same_steps():
    """A fresh plan (a restarted worker) gives step k exactly as the plan that ran steps 0..k-1 did."""
    ran = plan()
    for step in range(9):
        ran.step(step)
    assert plan().step(9) == ran.step(9)


def test_split_over_ranks_balances_tokens_and_pads_with_empty_micro_batches():
    lengths = np.array([100, 90, 10, 10, 5])
    per_rank = split_over_ranks([[0], [1], [2, 3], [4]], lengths, world_size=3)
    assert per_rank == [[[0], []], [[1], []], [[2, 3], [4]]]


def test_too_little_data_for_one_step_is_an_error():
    with pytest.raises(ValueError, match="global_batch_samples"):
        plan(global_batch_samples=101)


def test_samples_that_cannot_be_trained_on_are_dropped_and_counted():
    lengths = np.array([10, 700, 20, 30, 0])
    targets = np.array([5, 300, 0, 9, 0])
    source, dropped = trainable("a", np.arange(5), lengths, targets, max_seq_len=512, weight=1.0)
    assert source.indices.tolist() == [0, 3]
    assert dropped == {"over_max_seq_len": 1, "no_assistant_tokens": 1, "untokenizable": 1}


@pytest.mark.parametrize(
    "step, expected",
    [(0, 0.25), (3, 1.0), (4, 1.0), (9, 0.1), (6, 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 2 / 5)))],
    ids=["warmup-start", "warmup-end", "decay-start", "last-step-at-floor", "mid-decay"],
)
def test_warmup_then_cosine(step, expected):
    assert warmup_cosine_lr(step, total_steps=10, peak_lr=1.0, warmup_steps=4, min_lr_ratio=0.1) == pytest.approx(
        expected)


def test_the_schedule_rises_then_falls():
    lrs = [warmup_cosine_lr(s, 50, 8e-5, 5, 0.0) for s in range(50)]
    assert lrs[:5] == sorted(lrs[:5]) and lrs[4:] == sorted(lrs[4:], reverse=True) and lrs[-1] == 0.0
