"""`StaticEngine` on a tiny random Llama: the same numbers as the plain path, from fixed slots.

Every log-probability is checked against one unpadded forward pass over prompt + sample (what
the trainer computes), and greedy tokens against `TransformersEngine`. The cases are the ones
the slot machinery could get wrong: more requests than slots (admission as slots free up),
a turn that reuses its last turn's keys and values, a head shared by one admission, identical
prompts copied from one prefill, weights changed under cached prefixes, bf16.
"""

from __future__ import annotations

import asyncio

import pytest
import torch

from agentrft.engines.base import Engine, SamplingParams
from agentrft.engines.static_engine import MIN_REUSE, StaticEngine, bucket, reusable_len
from agentrft.engines.weights import merged_weights
from agentrft.engines.transformers_engine import TransformersEngine
from agentrft.engines.batcher import BatchingSampler
from tests.tiny_model import ENGINE_PROMPTS as PROMPTS
from tests.tiny_model import PAD_ID, VOCAB_SIZE, assert_logprobs_match_full_forward, \
    full_forward_logprobs, tiny_llama

HEAD = [3 + (i * 7) % 90 for i in range(24)]  # longer than MIN_REUSE
pytestmark = pytest.mark.usefixtures("one_torch_thread")




def test_is_an_engine(tiny_model):
    assert isinstance(StaticEngine(tiny_model, pad_token_id=PAD_ID, max_slots=2, max_len=32), Engine)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_logprobs_equal_full_forward_with_more_requests_than_slots(tiny_model, temperature):
    engine = StaticEngine(tiny_model, pad_token_id=PAD_ID, max_slots=2, max_len=64)
    outs = engine.generate(PROMPTS, SamplingParams(temperature=temperature, max_new_tokens=10))
    assert_logprobs_match_full_forward(tiny_model, PROMPTS, outs, temperature)
    assert all(o.finish_reason == "length" and len(o.token_ids) == 10 for o in outs)
    assert not engine.busy


def test_greedy_tokens_equal_the_plain_engine(tiny_model):
    prompts = [HEAD + [40 + i] * (1 + i % 3) for i in range(6)] + PROMPTS
    params = SamplingParams(temperature=0, max_new_tokens=12)
    plain = TransformersEngine(tiny_model, pad_token_id=PAD_ID).generate(prompts, params)
    ours = StaticEngine(tiny_model, pad_token_id=PAD_ID, max_slots=4, max_len=64).generate(prompts, params)
    assert [o.token_ids for o in ours] == [o.token_ids for o in plain]


def test_a_head_shared_by_one_admission_is_prefilled_once(tiny_model):
    prompts = [HEAD + [40 + i, 50 + i] for i in range(4)]
    engine = StaticEngine(tiny_model, pad_token_id=PAD_ID, max_slots=4, max_len=64)
    outs = engine.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=6))
    assert_logprobs_match_full_forward(tiny_model, prompts, outs, 1.0)
    assert engine.prefilled_tokens == len(HEAD) + 4 * 2


def test_identical_prompts_are_prefilled_once_and_sampled_independently(tiny_model):
    prompts = [HEAD + [60]] * 6
    engine = StaticEngine(tiny_model, pad_token_id=PAD_ID, max_slots=8, max_len=64, seed=1)
    outs = engine.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=8))
    assert_logprobs_match_full_forward(tiny_model, prompts, outs, 1.0)
    assert engine.prefilled_tokens == len(HEAD) + 1
    assert len({tuple(o.token_ids) for o in outs}) > 1


def test_a_next_turn_reuses_its_slot_and_prefills_only_the_new_tokens(tiny_model):
    engine = StaticEngine(tiny_model, pad_token_id=PAD_ID, max_slots=3, max_len=96)
    params = SamplingParams(temperature=1.0, max_new_tokens=5)
    first = [HEAD + [41], HEAD[::-1] + [42]]
    outs = engine.generate(first, params)
    before = engine.prefilled_tokens
    tool_output = [70, 71, 72]
    second = [p + o.token_ids + tool_output for p, o in zip(first, outs)]
    outs2 = engine.generate(second, params)
    assert_logprobs_match_full_forward(tiny_model, second, outs2, 1.0)
    # Each turn re-runs only its last sampled token (never fed) and the tool output.
    assert engine.prefilled_tokens - before == 2 * (1 + len(tool_output))


def test_changed_weights_forget_cached_prefixes(tiny_model):
    from peft import LoraConfig, get_peft_model

    policy = get_peft_model(tiny_llama(seed=0), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    engine = StaticEngine(policy, pad_token_id=PAD_ID, max_slots=2, max_len=64)
    prompt = [HEAD + [41]]
    params = SamplingParams(temperature=1.0, max_new_tokens=5)
    engine.generate(prompt, params)
    with torch.no_grad():  # an "update": LoRA B away from zero changes every projection
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    engine.sync_weights(policy)
    before = engine.prefilled_tokens
    outs = engine.generate(prompt, params)
    assert engine.prefilled_tokens - before == len(prompt[0])  # nothing reused
    assert_logprobs_match_full_forward(policy, prompt, outs, 1.0)


def test_merged_weights_fold_lora_into_the_base_and_respect_disabling():
    from peft import LoraConfig, get_peft_model

    policy = get_peft_model(tiny_llama(seed=0), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    plain = tiny_llama(seed=0)
    names = {n for n, _ in plain.named_parameters()}
    weights = merged_weights(policy)
    assert names <= set(weights)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(weights[q], plain.get_parameter(q))
    with policy.disable_adapter():
        assert torch.equal(merged_weights(policy)[q], plain.get_parameter(q))


def test_bf16_logprobs_are_within_bf16_tolerance_of_fp32(tiny_model):
    engine = StaticEngine(tiny_model, pad_token_id=PAD_ID, max_slots=4, max_len=64,
                          dtype=torch.bfloat16)
    prompts = [HEAD + [40 + i] for i in range(4)]
    outs = engine.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=8))
    diffs = []
    for prompt, out in zip(prompts, outs):
        ref = full_forward_logprobs(tiny_model, prompt + out.token_ids, len(prompt))
        diffs += [abs(a - b) for a, b in zip(out.logprobs, ref)]
    assert max(diffs) < 0.25 and sum(diffs) / len(diffs) < 0.05, max(diffs)


def test_stop_tokens_and_the_slot_length_end_a_turn(tiny_model):
    engine = StaticEngine(tiny_model, pad_token_id=PAD_ID, max_slots=2, max_len=16)
    greedy = engine.generate([[5, 6, 7]], SamplingParams(temperature=0, max_new_tokens=8))[0]
    stop = greedy.token_ids[3]
    first = greedy.token_ids.index(stop)
    out = engine.generate([[5, 6, 7]], SamplingParams(temperature=0, max_new_tokens=8,
                                                      stop_token_ids=(stop,)))[0]
    assert out.finish_reason == "stop" and out.token_ids == greedy.token_ids[:first + 1]
    # 14 prompt tokens in 16 positions: two tokens fit (the second is sampled, never fed).
    long = engine.generate([list(range(3, 17))], SamplingParams(temperature=0, max_new_tokens=8))[0]
    assert long.finish_reason == "length" and len(long.token_ids) == 3


def test_a_prompt_that_does_not_fit_is_a_clear_error(tiny_model):
    engine = StaticEngine(tiny_model, pad_token_id=PAD_ID, max_slots=2, max_len=16)
    with pytest.raises(ValueError, match="does not fit"):
        engine.submit(list(range(3, 30)), SamplingParams())
    with pytest.raises(ValueError, match="empty"):
        engine.submit([], SamplingParams())


def test_batching_sampler_admits_turns_as_rollouts_become_ready(tiny_model):
    """Rollouts of different lengths with a 'tool call' (an await) between turns: each next
    turn joins the running batch, and every log-prob still matches the full forward."""
    engine = StaticEngine(tiny_model, pad_token_id=PAD_ID, max_slots=4, max_len=96)
    sampler = BatchingSampler(engine)
    transcripts = []

    async def rollout(i: int):
        prompt = HEAD + [40 + i]
        params = SamplingParams(temperature=1.0, max_new_tokens=2 + i % 4)  # turns end apart
        for turn in range(1 + i % 3):
            out = await sampler.sample(prompt, params)
            transcripts.append((list(prompt), out))
            await asyncio.sleep(0.001 * (i % 2))  # a tool call
            prompt = prompt + out.token_ids + [70 + turn]

    async def main():
        await asyncio.gather(*(rollout(i) for i in range(7)))

    asyncio.run(main())
    assert len(transcripts) == sum(1 + i % 3 for i in range(7))
    for prompt, out in transcripts:
        assert_logprobs_match_full_forward(tiny_model, [prompt], [out], 1.0)
    assert engine.prefilled_tokens < sum(len(p) for p, _ in transcripts) / 2
    assert engine.joined_running > 0  # continuous: some turns joined a batch mid-decode


def test_an_engine_error_reaches_every_waiting_rollout_and_the_sampler_recovers(tiny_model):
    engine = StaticEngine(tiny_model, pad_token_id=PAD_ID, max_slots=2, max_len=32)
    sampler = BatchingSampler(engine)
    params = SamplingParams(temperature=1.0, max_new_tokens=3)

    async def main():
        bad = await asyncio.gather(sampler.sample([5, 6], params),
                                   sampler.sample(list(range(3, 40)), params),
                                   return_exceptions=True)
        good = await sampler.sample([5, 6], params)
        return bad, good

    bad, good = asyncio.run(main())
    assert all(isinstance(x, ValueError) for x in bad)
    assert len(good.token_ids) == 3 and not engine.busy


def test_buckets_and_reusable_len():
    assert [bucket(n, (1, 2, 4, 8), 100) for n in (1, 3, 8, 9, 17)] == [1, 4, 8, 16, 24]
    assert bucket(300, (128, 256), 280) == 280
    cached = list(range(40))
    assert reusable_len(cached, list(range(30)) + [99]) == 30
    assert reusable_len(cached, list(range(60))) == 40
    assert reusable_len(cached, list(range(40))) == 39  # the last prompt token always runs
    assert reusable_len(cached, [7] + list(range(1, 40))) == 0
    assert reusable_len([], list(range(5))) == 0
    assert MIN_REUSE < len(HEAD)


def test_a_training_job_samples_with_the_static_engine_and_stays_on_policy(tmp_path, tiny_model_dir):
    """Two LoRA steps with `engine: {type: static}`: the trainer's log-probs of what the engine
    sampled agree with the engine's at every step, so the engine's weights follow the updates."""
    from agentrft.spec.job import EngineDecl
    from agentrft.train.loop import Trainer
    from tests.test_train_tiny import make_job

    job = make_job(tmp_path, tiny_model_dir, max_steps=2)
    job.rl.engine = EngineDecl(type="static", max_slots=8)
    trainer = Trainer(job, tmp_path / "run")
    metrics = asyncio.run(trainer.run_async())
    assert isinstance(trainer.engine, StaticEngine)
    steps = [m for m in metrics if m["step"] >= 1]
    assert len(steps) == 2 and all(m["trained_sequences"] > 0 for m in steps)
    assert all(m["logprob_mismatch_mean"] < 1e-4 for m in steps), steps


def test_build_engine_picks_static_on_cuda_and_sizes_it_from_the_job(tmp_path, tiny_model_dir):
    from agentrft.engines.build import build_engine, default_engine_type
    from agentrft.engines.transformers_engine import TransformersEngine
    from agentrft.models.loading import load_model, load_tokenizer
    from agentrft.spec.job import EngineDecl
    from tests.test_train_tiny import make_job

    assert default_engine_type("cuda") == "static" and default_engine_type("cuda:1") == "static"
    assert default_engine_type("cpu") == "transformers"
    job = make_job(tmp_path, tiny_model_dir, max_steps=1)
    model, tokenizer = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    assert isinstance(build_engine(job, model, tokenizer, device="cpu"), TransformersEngine)
    job.rl.engine = EngineDecl(type="static", max_slots=6, cuda_graphs=False)
    engine = build_engine(job, model, tokenizer, device="cpu")
    assert isinstance(engine, StaticEngine) and engine.max_slots == 6 and not engine.use_graphs
    assert engine.max_len == job.hp.max_rollout_tokens + job.hp.max_new_tokens


def gqa_llama(seed: int = 0):
    """Like tiny_llama, with 4 query heads sharing 2 key/value heads (as SmolLM2's 9 share 3)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=VOCAB_SIZE, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, pad_token_id=PAD_ID, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    return model.eval()


def test_grouped_query_heads_decode_without_repeating_keys():
    model = gqa_llama()
    engine = StaticEngine(model, pad_token_id=PAD_ID, max_slots=4, max_len=64)
    assert engine.model.config._attn_implementation == "agentrft_slots"
    assert model.config._attn_implementation == "sdpa"  # the policy's own model is untouched
    prompts = [HEAD + [40 + i] for i in range(5)]
    outs = engine.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=8))
    assert_logprobs_match_full_forward(model, prompts, outs, 1.0)


def test_slot_attention_equals_attention_over_repeated_keys():
    from transformers.integrations.sdpa_attention import repeat_kv

    from agentrft.engines.slot_kv import slot_attention

    torch.manual_seed(0)
    q, k, v = torch.randn(3, 6, 1, 8), torch.randn(3, 2, 10, 8), torch.randn(3, 2, 10, 8)
    mask = torch.zeros(3, 1, 1, 10)
    mask[0, ..., 7:] = torch.finfo(torch.float32).min  # row 0 sees only 7 keys
    out, _ = slot_attention(None, q, k, v, mask, scaling=0.3)
    ref = torch.nn.functional.scaled_dot_product_attention(q, repeat_kv(k, 3), repeat_kv(v, 3),
                                                           attn_mask=mask, scale=0.3)
    assert out.shape == (3, 1, 6, 8)
    assert torch.allclose(out, ref.transpose(1, 2), atol=1e-6)


def test_a_straggler_in_a_high_slot_is_moved_down(tiny_model):
    engine = StaticEngine(tiny_model, pad_token_id=PAD_ID, max_slots=8, max_len=64)
    rids = [engine.submit([10 + i, 11, 12], SamplingParams(temperature=1.0, max_new_tokens=2))
            for i in range(7)]
    straggler = [30, 31, 32, 33]
    rids.append(engine.submit(straggler, SamplingParams(temperature=1.0, max_new_tokens=20)))
    done = {}
    while len(done) < len(rids):
        done.update(engine.step())
    assert engine.compactions > 0
    out = done[rids[-1]]
    assert_logprobs_match_full_forward(tiny_model, [straggler], [out], 1.0)
