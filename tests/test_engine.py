"""`TransformersEngine` on a tiny random Llama: logprobs, padding, prefill dedup, stops, seeds.

The reference for every log-probability is one unpadded forward pass over prompt + sample,
which is what the trainer computes: if the engine's left padding, position ids, KV cache or
prefill fan-out were wrong, the two would disagree.
"""

from __future__ import annotations

import pytest
import torch

from agentrft.engines.base import Engine, SamplingParams
from agentrft.engines.transformers_engine import MIN_SHARED_PREFIX, TransformersEngine, \
    common_prefix_len, token_batches
from tests.tiny_model import ENGINE_PROMPTS as PROMPTS
from tests.tiny_model import PAD_ID, VOCAB_SIZE, assert_logprobs_match_full_forward

pytestmark = pytest.mark.usefixtures("one_torch_thread")




@pytest.fixture
def engine(tiny_model):
    return TransformersEngine(tiny_model, pad_token_id=PAD_ID, seed=0)


def test_engine_is_an_engine(engine):
    assert isinstance(engine, Engine)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_logprobs_equal_full_forward_with_left_padding_and_dedup(tiny_model, engine, temperature):
    params = SamplingParams(temperature=temperature, max_new_tokens=10)
    outs = engine.generate(PROMPTS, params)
    assert_logprobs_match_full_forward(tiny_model, PROMPTS, outs, temperature)
    assert all(o.finish_reason == "length" and len(o.token_ids) == 10 for o in outs)


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_logprobs_match_when_rows_share_a_long_prefix(tiny_model, engine, temperature):
    """A task's rows share system prompt, tools and demonstrations: the engine runs that
    prefix once and pads each row's own suffix after it ([prefix][pad][suffix])."""
    prefix = list(range(40, 40 + MIN_SHARED_PREFIX + 4))
    prompts = [prefix + [7, 8, 9], prefix + [10], prefix + [7, 8, 9], prefix + [11, 12, 13, 14, 15],
               prefix + [10, 3]]
    assert common_prefix_len(prompts) == len(prefix)
    outs = engine.generate(prompts, SamplingParams(temperature=temperature, max_new_tokens=8))
    assert_logprobs_match_full_forward(tiny_model, prompts, outs, temperature)


def test_a_prompt_that_is_the_shared_prefix_itself_still_gets_its_own_last_token(tiny_model, engine):
    prefix = list(range(60, 60 + MIN_SHARED_PREFIX + 2))
    prompts = [prefix, prefix + [5, 6]]  # the shared part stops one token short of row 0's end
    outs = engine.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=6))
    assert_logprobs_match_full_forward(tiny_model, prompts, outs, 1.0)


def test_a_kept_head_is_reused_across_calls_and_matches_a_full_forward(tiny_model):
    """An agent's turns arrive a few at a time: one prompt alone, then two of other rows. With
    prefix_cache the second call reuses the task prompt's keys and values from the first."""
    engine = TransformersEngine(tiny_model, pad_token_id=PAD_ID, seed=0, prefix_cache=True)
    task = list(range(40, 40 + MIN_SHARED_PREFIX + 6))
    params = SamplingParams(temperature=1.0, max_new_tokens=6)
    calls = [[task + [7, 8, 9, 10]],  # one prompt: its head is all of it but the last token
             [task + [11, 12], task + [13]],  # other rows: the task prompt is reused
             [task + [11, 12, 5, 6]]]  # row 1's next turn: the task prompt reused again
    for prompts in calls:
        outs = engine.generate(prompts, params)
        assert_logprobs_match_full_forward(tiny_model, prompts, outs, 1.0)
    assert engine.prefill_tokens_reused == 0 + len(task) + len(task)
    # call 1: the head and the last token; 2: two suffixes padded to 2; 3: [11, 12, 5], then 6
    assert engine.prefill_tokens_run == (len(task) + 4) + 2 * 2 + (3 + 1)


def test_weights_synced_drop_the_kept_head(tiny_model):
    engine = TransformersEngine(tiny_model, pad_token_id=PAD_ID, seed=0, prefix_cache=True)
    prompts = [list(range(40, 40 + MIN_SHARED_PREFIX + 6)) + [7, 8]]
    params = SamplingParams(temperature=1.0, max_new_tokens=4)
    engine.generate(prompts, params)
    with torch.no_grad():  # an update
        for p in tiny_model.parameters():
            p.mul_(1.5)
    engine.sync_weights(tiny_model)
    outs = engine.generate(prompts, params)
    assert engine.prefill_tokens_reused == 0  # a stale head would give the old weights' logprobs
    assert_logprobs_match_full_forward(tiny_model, prompts, outs, 1.0)


def test_without_prefix_cache_nothing_is_kept(tiny_model, engine):
    """The default (a served model switching adapters between calls): every call computes."""
    prompts = [list(range(40, 40 + MIN_SHARED_PREFIX + 6)) + [7, 8]] * 2 + \
              [list(range(40, 40 + MIN_SHARED_PREFIX + 6)) + [9]]
    for _ in range(2):
        engine.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=3))
    assert engine.prefill_tokens_reused == 0


def test_common_prefix_len():
    assert common_prefix_len([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_len([[1], [2]]) == 0
    assert common_prefix_len([[1, 2], [1, 2]]) == 2


def test_logprobs_match_when_every_row_shares_one_prompt(tiny_model, engine):
    prompts = [[30, 31, 32]] * 6  # the G rollouts of one row: one prefill fanned out to 6
    outs = engine.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=8))
    assert_logprobs_match_full_forward(tiny_model, prompts, outs, 1.0)
    # Rows fanned out from one prefill still sample independently.
    assert len({tuple(o.token_ids) for o in outs}) > 1


def test_logprobs_match_across_max_batch_size_chunks(tiny_model):
    engine = TransformersEngine(tiny_model, pad_token_id=PAD_ID, max_batch_size=2, seed=3)
    outs = engine.generate(PROMPTS, SamplingParams(temperature=1.0, max_new_tokens=6))
    assert_logprobs_match_full_forward(tiny_model, PROMPTS, outs, 1.0)


def test_token_batches_cap_rows_and_tokens_and_keep_order():
    assert token_batches([5, 5, 5, 5], max_rows=3, max_tokens=100) == [slice(0, 3), slice(3, 4)]
    assert token_batches([5, 5, 5, 5], max_rows=8, max_tokens=10) == [slice(0, 2), slice(2, 4)]
    # a row over the token cap runs alone, and the rows after it start a new batch
    assert token_batches([3, 50, 3, 3], max_rows=8, max_tokens=10) == [slice(0, 1), slice(1, 2),
                                                                      slice(2, 4)]
    assert token_batches([], max_rows=8, max_tokens=10) == []


def test_logprobs_match_across_token_budget_batches(tiny_model):
    """Rows split by the batch token budget decode separately and still match a full forward."""
    engine = TransformersEngine(tiny_model, pad_token_id=PAD_ID, max_batch_tokens=12, seed=3)
    params = SamplingParams(temperature=1.0, max_new_tokens=6)
    assert len(token_batches([len(p) + 6 for p in PROMPTS], 64, 12)) > 1
    outs = engine.generate(PROMPTS, params)
    assert len(outs) == len(PROMPTS)
    assert_logprobs_match_full_forward(tiny_model, PROMPTS, outs, 1.0)


def test_logprobs_are_untruncated_under_top_p(tiny_model, engine):
    """Documented: log-prob under logits / temperature, before top-p truncation."""
    params = SamplingParams(temperature=0.8, top_p=0.5, max_new_tokens=8)
    outs = engine.generate(PROMPTS, params)
    assert_logprobs_match_full_forward(tiny_model, PROMPTS, outs, 0.8)


def test_top_p_samples_only_from_the_nucleus(tiny_model, engine):
    top_p = 0.3
    prompts = [[40, 41, 42]] * 16
    outs = engine.generate(prompts, SamplingParams(temperature=1.0, top_p=top_p, max_new_tokens=1))
    with torch.no_grad():
        probs = torch.softmax(tiny_model(input_ids=torch.tensor([prompts[0]])).logits[0, -1], -1)
    sorted_p, order = probs.sort(descending=True)
    nucleus = {int(t) for t, before in zip(order, sorted_p.cumsum(0) - sorted_p) if before <= top_p}
    assert len(nucleus) < VOCAB_SIZE
    assert {o.token_ids[0] for o in outs} <= nucleus


def test_greedy_is_deterministic_and_is_the_argmax(tiny_model, engine):
    params = SamplingParams(temperature=0.0, max_new_tokens=8)
    first = engine.generate(PROMPTS, params)
    second = engine.generate(PROMPTS, params)
    other_seed = TransformersEngine(tiny_model, pad_token_id=PAD_ID, seed=99).generate(PROMPTS, params)
    assert [o.token_ids for o in first] == [o.token_ids for o in second] \
        == [o.token_ids for o in other_seed]
    for prompt, out in zip(PROMPTS, first):  # each token is the argmax given what came before
        seq = prompt + out.token_ids
        with torch.no_grad():
            logits = tiny_model(input_ids=torch.tensor([seq])).logits[0]
        assert out.token_ids == logits[len(prompt) - 1:-1].argmax(-1).tolist()
    assert first[0].token_ids == first[2].token_ids  # same prompt, same greedy continuation


def test_same_seed_same_samples_and_different_seed_differs(tiny_model):
    params = SamplingParams(temperature=1.0, max_new_tokens=10)

    def sample(seed):
        return [o.token_ids for o in
                TransformersEngine(tiny_model, pad_token_id=PAD_ID, seed=seed).generate(PROMPTS, params)]

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_tiny_top_p_equals_greedy(tiny_model):
    greedy = TransformersEngine(tiny_model, pad_token_id=PAD_ID, seed=0).generate(
        PROMPTS, SamplingParams(temperature=0.0, max_new_tokens=10))
    nucleus = TransformersEngine(tiny_model, pad_token_id=PAD_ID, seed=123).generate(
        PROMPTS, SamplingParams(temperature=1.0, top_p=1e-6, max_new_tokens=10))
    assert [o.token_ids for o in nucleus] == [o.token_ids for o in greedy]
    # At temperature 1 the two distributions are the same, so are the log-probs.
    for n, g in zip(nucleus, greedy):
        assert n.logprobs == pytest.approx(g.logprobs, abs=1e-5)


def _pick_stop(greedy: list[list[int]], rows: set[int]) -> tuple[int, int]:
    """A token that `rows` (same prompt, same greedy output) first write at some position >= 1
    and that no other row ever writes, with that position."""
    (row,) = {tuple(greedy[b]) for b in rows}
    others = {t for b, g in enumerate(greedy) if b not in rows for t in g}
    for pos, tok in enumerate(row):
        if pos >= 1 and tok not in others and tok not in row[:pos]:
            return tok, pos
    raise AssertionError(f"no usable stop token for rows {rows} in {greedy}; change PROMPTS")


def test_stop_token_ends_its_row_and_other_rows_run_to_length(tiny_model, engine):
    max_new = 12
    free = engine.generate(PROMPTS, SamplingParams(temperature=0.0, max_new_tokens=max_new))
    greedy = [o.token_ids for o in free]
    stop, pos = _pick_stop(greedy, {3})

    outs = engine.generate(PROMPTS, SamplingParams(temperature=0.0, max_new_tokens=max_new,
                                                   stop_token_ids=(stop,)))
    stopped = outs[3]
    assert stopped.finish_reason == "stop"
    assert stopped.token_ids == greedy[3][:pos + 1]  # the stop token kept, nothing after it
    assert stopped.token_ids[-1] == stop and stop not in stopped.token_ids[:-1]
    assert len(stopped.logprobs) == len(stopped.token_ids)
    for b in (0, 1, 2, 4):
        assert outs[b].finish_reason == "length"
        assert len(outs[b].token_ids) == max_new and len(outs[b].logprobs) == max_new
        assert outs[b].token_ids == greedy[b]  # unaffected by the row that stopped early
    assert_logprobs_match_full_forward(tiny_model, PROMPTS, outs, 0.0)


def test_any_token_of_the_stop_set_ends_a_row(tiny_model, engine):
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    greedy = [o.token_ids for o in engine.generate(PROMPTS, params)]
    stop_a, pos_a = _pick_stop(greedy, {3})
    stop_b, pos_b = _pick_stop(greedy, {1, 4})
    outs = engine.generate(PROMPTS, SamplingParams(temperature=0.0, max_new_tokens=12,
                                                   stop_token_ids=(stop_a, VOCAB_SIZE + 5, stop_b)))
    assert outs[3].token_ids == greedy[3][:pos_a + 1] and outs[3].finish_reason == "stop"
    for b in (1, 4):
        assert outs[b].token_ids == greedy[b][:pos_b + 1] and outs[b].finish_reason == "stop"
    for b in (0, 2):
        assert outs[b].token_ids == greedy[b] and outs[b].finish_reason == "length"
    assert_logprobs_match_full_forward(tiny_model, PROMPTS, outs, 0.0)


def test_every_row_stopping_ends_the_batch_early(engine):
    greedy = engine.generate([[50, 51]], SamplingParams(temperature=0.0, max_new_tokens=4))[0]
    first = greedy.token_ids[0]
    (out,) = engine.generate([[50, 51]], SamplingParams(temperature=0.0, max_new_tokens=50,
                                                        stop_token_ids=(first,)))
    assert out.token_ids == [first] and out.finish_reason == "stop"


def test_model_train_mode_is_restored(tiny_model, engine):
    tiny_model.train()
    try:
        engine.generate([[1, 2, 3]], SamplingParams(max_new_tokens=2))
        assert tiny_model.training
    finally:
        tiny_model.eval()


def test_roomy_layer_appends_in_place_and_grows_past_its_room():
    from transformers.cache_utils import DynamicLayer

    from agentrft.engines.transformers_engine import RoomyLayer

    plain = DynamicLayer()
    k, v = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    plain.update(k, v)
    roomy = RoomyLayer.taking_over(plain, room=1)
    for step in range(3):  # the second and third appends outgrow the room of one
        nk, nv = torch.randn(2, 3, 1, 5), torch.randn(2, 3, 1, 5)
        want_k, want_v = plain.update(nk, nv)
        got_k, got_v = roomy.update(nk, nv)
        assert torch.equal(got_k, want_k) and torch.equal(got_v, want_v)
        assert roomy.get_seq_length() == 5 + step
