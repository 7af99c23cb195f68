"""The training memory estimate: a pure function of the config's numbers and the settings."""

from __future__ import annotations

from worker.engine.train.memory import ModelShape, training_memory
from worker.engine.train.objective import chunk_tokens

SMOLLM2 = ModelShape(params=134_515_008, layers=30, hidden=576, vocab=49152)
LLAMA_8B = ModelShape(params=8_030_261_248, layers=32, hidden=4096, vocab=128256, weight_bytes=2)


def est(shape, **kw):
    base = dict(
        teacher=True,
        precision="fp32",
        checkpointing=False,
        micro_batch=4,
        seqlen=512,
        chunked=False,
    )
    return training_memory(shape, shape.params // 2, **{**base, **kw})


def test_checkpointing_and_chunking_cut_what_scales_with_tokens_and_vocabulary():
    today = est(SMOLLM2)
    lean = est(SMOLLM2, checkpointing=True, chunked=True)
    assert lean.activations < today.activations / 4 and lean.logits < today.logits / 4
    assert lean.model == today.model and lean.state == today.state
    assert chunk_tokens(SMOLLM2.vocab) * SMOLLM2.vocab <= 1 << 24


def test_bf16_holds_the_teacher_in_two_bytes_and_a_bf16_model_gets_fp32_masters():
    assert est(SMOLLM2, precision="bf16").teacher == SMOLLM2.params * 2
    assert est(SMOLLM2).teacher == SMOLLM2.params * 4
    both = est(SMOLLM2, precision="bf16", dense_copy_here=True).teacher  # CPU: dense + bf16
    assert both == SMOLLM2.params * 6
    assert est(LLAMA_8B).state == LLAMA_8B.params // 2 * 20  # grad, moments, mask, master


def test_processes_shard_weights_and_state_but_not_activations():
    one, eight = est(LLAMA_8B, precision="bf16"), est(LLAMA_8B, precision="bf16", processes=8)
    assert eight.model == one.model // 8 and eight.state == one.state // 8
    assert eight.activations == one.activations and eight.total < one.total / 3


def test_an_8b_recovery_needs_its_adamw_state_sharded():
    """7.0e9 trainable decoder weights x 20 bytes of fp32 state is 140 GB: no single 80 GB
    device holds it whatever the activations; eight shards of it do."""
    gib80, trainable = 80 * 2**30, 6_979_321_856
    lean = dict(
        teacher=True, precision="bf16", checkpointing=True, chunked=True, micro_batch=1, seqlen=2048
    )
    assert training_memory(LLAMA_8B, trainable, **lean).total > gib80
    assert training_memory(LLAMA_8B, trainable, **lean, processes=8).total < gib80 / 2
