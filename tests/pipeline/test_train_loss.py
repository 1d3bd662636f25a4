"""The loss is the token mean of a whole optimizer step: splitting the step into micro-batches, over ranks, or
packing its samples together changes nothing in the update; and computing it chunk by chunk inside the output layer
changes nothing either. In-process with torch on a tiny Llama; the real path (DeepSpeed over gloo in Ray Train) is
checked in tests/jobs/test_train.py."""

from functools import cache

import pytest

from pipeline.packing import IGNORE_INDEX, build_pack, build_padded_batch
from pipeline.train_loss import LossHead, backward_scale, token_loss_sum
from tests.tiny_student import tiny_llama, tokenized

# Token sequences of different lengths; the assistant part (True) differs in size too.
ROWS = [
    ([5, 6, 7, 8, 9, 10], [False, False, True, True, True, True]),
    ([11, 12, 13], [False, True, True]),
    ([14, 15, 16, 17, 18, 19, 20, 21, 22], [False, False, False, False, False, True, True, True, True]),
    ([23, 24, 25, 26], [False, True, True, True]),
]


def gradients(micro_batches_per_rank):
    """Gradients after one optimizer step's backward passes, as DeepSpeed and FSDP produce them: each rank sums its
    micro-batches' gradients, then the ranks' gradients are averaged."""
    import torch

    samples = tokenized(ROWS)
    model = tiny_llama("eager")
    head = LossHead(model, chunk_tokens=3)
    world_size = len(micro_batches_per_rank)
    packs = [[build_pack(samples, mb) for mb in rank] for rank in micro_batches_per_rank]
    step_tokens = sum(p.target_tokens for rank in packs for p in rank)  # the all-reduce of token counts
    per_rank = []
    for rank in packs:
        model.zero_grad()
        loss_sum = 0.0
        for pack in rank:
            loss = head.loss_sum(model, torch.as_tensor(pack.labels)[None],
                                 input_ids=torch.as_tensor(pack.input_ids)[None],
                                 position_ids=torch.as_tensor(pack.position_ids)[None])
            (loss * backward_scale(step_tokens, world_size)).backward()
            loss_sum += loss.item()
        per_rank.append(({n: p.grad.clone() for n, p in model.named_parameters()}, loss_sum))
    averaged = {n: sum(g[n] for g, _ in per_rank) / world_size for n in per_rank[0][0]}
    return averaged, sum(loss for _, loss in per_rank) / step_tokens


def assert_same(a, b):
    import torch

    (grads_a, loss_a), (grads_b, loss_b) = a, b
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    for name in grads_a:
        assert torch.linalg.norm(grads_a[name] - grads_b[name]) <= 1e-4 * torch.linalg.norm(grads_b[name]), name


ONE_PACK = [[[0, 1, 2, 3]]]


@cache
def one_batch():
    return gradients(ONE_PACK)


@pytest.mark.parametrize(
    "split",
    [
        [[[0], [1], [2], [3]]],  # one rank, four micro-batches
        [[[0, 1], [2, 3]]],  # one rank, two packs
        [[[0], [1]], [[2], [3]]],  # two ranks, two micro-batches each
        [[[0, 1, 2]], [[3]]],  # two ranks with unequal token counts
        [[[3], [0, 2]], [[1]]],  # two ranks, different numbers of micro-batches
    ],
    ids=["accumulate-4", "accumulate-2", "2-ranks-x-2", "unequal-ranks", "uneven-micro-batches"],
)
def test_any_split_of_a_step_gives_the_update_of_one_batch(split):
    assert_same(gradients(split), one_batch())


def test_packed_equals_unpacked():
    """Unpacked: the classic padded batch, one sample per row, with an attention mask; packed: one row, no mask."""
    import torch

    samples = tokenized(ROWS)
    model = tiny_llama("eager")
    batch = build_padded_batch(samples, range(len(ROWS)), pad_id=0)
    assert batch.input_ids.shape == (4, 9)
    loss = LossHead(model, chunk_tokens=3).loss_sum(model, torch.as_tensor(batch.labels),
                                                    input_ids=torch.as_tensor(batch.input_ids),
                                                    attention_mask=torch.as_tensor(batch.attention_mask))
    tokens = int(samples.target_tokens.sum())
    (loss * backward_scale(tokens, 1)).backward()
    assert_same(({n: p.grad for n, p in model.named_parameters()}, loss.item() / tokens), one_batch())


def test_averaging_micro_batch_means_would_not_give_the_same_update():
    """The alternative this module avoids: each micro-batch's mean loss, averaged. A token in a short micro-batch
    would weigh more than one in a long micro-batch."""
    import torch

    samples = tokenized(ROWS)
    model = tiny_llama("eager")
    head = LossHead(model, chunk_tokens=3)
    for index in range(len(ROWS)):
        pack = build_pack(samples, [index])
        loss = head.loss_sum(model, torch.as_tensor(pack.labels)[None], input_ids=torch.as_tensor(pack.input_ids)[None])
        (loss / pack.target_tokens / len(ROWS)).backward()
    mean_of_means = {n: p.grad for n, p in model.named_parameters()}
    token_mean, _ = one_batch()
    name = "model.layers.0.mlp.up_proj.weight"
    assert torch.linalg.norm(mean_of_means[name] - token_mean[name]) > 1e-2 * torch.linalg.norm(token_mean[name])


def full_logits_loss(hidden, weight, labels):
    """The textbook loss: every position's logits at once, the unlabelled ones ignored."""
    import torch.nn.functional as F

    return F.cross_entropy((hidden @ weight.T).float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")


@pytest.mark.parametrize("chunk_tokens", [1, 4, 1000])
def test_the_chunked_loss_equals_the_full_logits_loss_with_its_gradients(chunk_tokens):
    import torch

    torch.manual_seed(0)
    labels = torch.randint(0, 50, (12,))
    labels[[0, 3, 4, 11]] = IGNORE_INDEX
    inputs = [torch.randn(12, 16, requires_grad=True), torch.randn(50, 16, requires_grad=True)]
    expected = full_logits_loss(*inputs, labels)
    expected_grads = torch.autograd.grad(expected, inputs)

    chunked = token_loss_sum(*inputs, labels, chunk_tokens)
    assert chunked.dtype == torch.float32
    assert chunked.item() == pytest.approx(expected.item(), rel=1e-6)
    for got, want in zip(torch.autograd.grad(chunked, inputs), expected_grads):
        assert torch.allclose(got, want, atol=1e-6)


def test_a_pack_without_targets_still_reaches_every_weight_with_zero_gradients():
    """A rank's filler pack: ZeRO-3 and FSDP run collectives for every parameter in backward, on every rank."""
    import torch

    hidden, weight = torch.randn(3, 16, requires_grad=True), torch.randn(50, 16, requires_grad=True)
    loss = token_loss_sum(hidden, weight, torch.full((3,), IGNORE_INDEX), chunk_tokens=2)
    assert loss.item() == 0.0
    grads = torch.autograd.grad(loss, [hidden, weight])
    assert all(g is not None and not g.any() for g in grads)


def test_without_labels_the_output_layer_still_computes_logits():
    import torch

    model = tiny_llama("eager")
    input_ids = torch.tensor([[5, 6, 7, 8]])
    before = model(input_ids=input_ids, use_cache=False).logits
    head = LossHead(model, chunk_tokens=2)
    assert torch.equal(model(input_ids=input_ids, use_cache=False).logits, before)
    assert head.loss_sum(model, torch.tensor([[6, 7, 8, IGNORE_INDEX]]), input_ids=input_ids).shape == ()


def test_a_step_without_targets_is_refused():
    with pytest.raises(ValueError):
        backward_scale(0, 2)


def test_backward_scale_undoes_the_average_over_ranks():
    assert backward_scale(100, 4) == pytest.approx(0.04)
