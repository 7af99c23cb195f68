"""Peak bytes per device of each stage, from a model's shape: pure arithmetic, no torch.

Every function returns a breakdown {term: bytes}; the peak is its sum. The terms and their
constants are explained in docs/plan.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from service.planner.shape import ModelShape

CHUNK_TOKENS = 1024  # tokens per chunk of the KL / LM loss when the loss is chunked
WALK_TOKENS = 1024  # tokens per layer call of the walk (worker/engine/walk/walker.py)
FP32 = 4


@dataclass(frozen=True)
class TrainSettings:
    """The knobs that change a training stage's memory."""

    precision: str = "fp32"  # fp32 | bf16 (autocast, fp32 master and AdamW state)
    checkpointing: bool = False  # gradient checkpointing: one layer's activations at a time
    chunked_loss: bool = False  # full-vocabulary logits only for CHUNK_TOKENS at a time
    micro_batch: int = 1  # sequences per forward
    processes: int = 1  # FSDP ranks, one per device
    offload: str = "none"  # cpu: trained state in host memory, the optimizer on the CPU

    @property
    def compute_bytes(self) -> int:
        return 2 if self.precision == "bf16" else FP32

    @property
    def ranks(self) -> bool:
        """Whether the stage runs as FSDP ranks (more than one, or CPU offload)."""
        return self.processes > 1 or self.offload == "cpu"

    def but(self, **changes) -> TrainSettings:
        return replace(self, **changes)

    def describe(self) -> dict:
        return {
            "precision": self.precision,
            "checkpointing": self.checkpointing,
            "chunked_loss": self.chunked_loss,
            "micro_batch": self.micro_batch,
            "processes": self.processes,
            "offload": self.offload,
        }


def layer_token_values(m: ModelShape) -> int:
    """Values a decoder layer saves for backward per token: norms, q/k/v, attention output,
    residuals (~8 x hidden) and the MLP's gate, up, activation and product (~4 x width);
    measured on a Llama layer with SDPA attention: 6,440 values for hidden 256, width 1024."""
    return 8 * m.hidden + 4 * m.active_intermediate + 2 * m.kv_heads * m.head_dim


def group_inputs(m: ModelShape) -> list[int]:
    """Input width of each Linear group of a layer that shares one input (one statistic)."""
    q = m.heads * m.head_dim
    mlp = [m.hidden, m.intermediate] * max(1, m.experts)  # gate/up share; down reads the width
    return [m.hidden, q, *mlp]


def largest_linear(m: ModelShape) -> int:
    return max(m.hidden * m.heads * m.head_dim, m.hidden * m.intermediate)


def walk_bytes(m: ModelShape, wb: int, stats: str, nsamples: int, seqlen: int) -> dict:
    """One-shot walk: one layer, the activation buffers, one layer's statistics and what
    pruning one matrix needs (`stats`: none | norms | hessians)."""
    buffer = nsamples * seqlen * m.hidden * wb
    tokens = min(WALK_TOKENS, nsamples * seqlen) if seqlen <= WALK_TOKENS else seqlen
    out = {
        "layer weights": m.layer_linear * wb,
        "activation buffers (2)": 2 * buffer,
        "layer forward workspace": tokens * layer_token_values(m) * FP32,
        "embeddings (capture)": m.vocab * m.hidden * wb,
    }
    if stats == "hessians":  # H per input group, fp32; pruning: W, H^-1 and errors in fp32
        out["statistics (Hessians)"] = sum(d * d for d in group_inputs(m)) * FP32
        out["pruning one matrix"] = (2 * largest_linear(m) + max(group_inputs(m)) ** 2) * FP32
    else:  # norms are a vector per input; scores and their sort indices per matrix
        out["statistics (norms)"] = sum(group_inputs(m)) * FP32 * (stats == "norms")
        out["pruning one matrix"] = largest_linear(m) * (FP32 + 8)
    return out


def reconstruction_bytes(
    m: ModelShape, wb: int, nsamples: int, seqlen: int, precision: str, micro_batch: int
) -> dict:
    """Block-wise reconstruction inside the walk: the block trained to match its dense
    output: fp32 master, gradient and AdamW moments for its Linears, its dense copy, three
    activation buffers (inputs, dense targets, pruned outputs) and one micro-batch's
    activations for backward."""
    cb = 2 if precision == "bf16" else FP32
    pl = m.layer_linear
    return {
        "block weights + dense copy": 2 * pl * wb,
        "fp32 master, gradient, AdamW (16 B/weight)": 16 * pl,
        "activation buffers (3)": 3 * nsamples * seqlen * m.hidden * wb,
        "backward activations": micro_batch * seqlen * layer_token_values(m) * cb,
        "masks (bool)": pl,
    }


def trained_state(m: ModelShape, trained: tuple[str, ...], kept: float) -> dict:
    """What each trained value costs, all ranks together: fp32 master, fp32 gradient, two fp32
    AdamW moments. `kept` < 1: recovery, which trains only the kept entries of the pruned
    Linears (train/masked.py KeptValues), so a pruned weight has no state at all."""
    n_train = int(m.linear * kept) * len(trained)
    return {
        "fp32 master of the trained values": FP32 * n_train,
        "gradients (fp32)": FP32 * n_train,
        "AdamW moments (fp32)": 2 * FP32 * n_train,
    }


def training_bytes(
    m: ModelShape,
    trained: tuple[str, ...],
    teacher: bool,
    seqlen: int,
    s: TrainSettings,
    kept: float = 1.0,
) -> dict:
    """A training stage on one device, as the engine holds it: the frozen rest of the student
    (embeddings, head, norms: whole on every rank), the trained state (trained_state; split
    over FSDP ranks, or in host memory with offload cpu), the masks (bool or kept columns in
    one process, bits on FSDP ranks, whose buffers are whole on every rank), the teacher
    (split over the ranks), activations and logits. FSDP ranks each gather one layer (and the next,
    prefetched) of student and teacher at a time, and a layer's gradient."""
    cb, n, t = s.compute_bytes, m.params, m.linear
    frozen = n - t if "weights" in trained else n
    state = trained_state(m, trained, kept)
    p = s.processes
    out = {"student: frozen parts (embeddings, head, norms)": frozen * cb}
    if not s.ranks:
        # recovery holds each row's kept columns (int16) where rows keep equal counts, else
        # a bool mask: the larger of the two
        masks = max(t, int(2 * kept * t)) if kept < 1 else t
        out |= state | {"masks (bool)": masks, "teacher": n * cb if teacher else 0}
    else:
        if s.offload == "cpu":
            out["trained state (in host memory)"] = 0  # training_host_bytes
        else:
            out |= {f"{k} / {p} ranks": v // p for k, v in state.items()}
        out["masks (bits, whole on each rank)"] = t // 8
        out[f"teacher / {p} ranks"] = (n * cb if teacher else 0) // p
        layer = int(m.layer_linear * kept)
        out["FSDP gathered student layers (2) + layer gradient"] = layer * FP32 * 3
        out["FSDP gathered teacher layers (2)"] = 2 * m.layer_linear * cb if teacher else 0
    tokens = s.micro_batch * seqlen
    per_layer = tokens * layer_token_values(m) * cb
    if s.checkpointing:
        acts = {
            "layer inputs (checkpointed)": m.layers * tokens * m.hidden * cb,
            "one layer recomputed (+ its built weights)": per_layer + m.layer_linear * cb,
        }
    else:  # each layer's weight built from the kept values and saved by its Linear
        acts = {"activations": m.layers * per_layer, "built weights saved": t * cb}
    if teacher:
        acts["teacher forward (one layer)"] = per_layer
    chunk = min(tokens, CHUNK_TOKENS) if s.chunked_loss else tokens
    # logits, their fp32 copy, log-probs, the KL's pointwise terms and gradients: measured
    # 37 B per token and vocabulary entry beyond the teacher's fp32 logits (objective.py)
    per_logit = (cb + 12) + ((cb + 16) if teacher else 0)
    acts["logits"] = chunk * m.vocab * per_logit
    if s.chunked_loss:
        acts["final hidden states"] = tokens * m.hidden * cb * (2 if teacher else 1)
    return {**out, **acts}


def training_host_bytes(
    m: ModelShape, wb: int, trained: tuple[str, ...], teacher: bool, s: TrainSettings, kept: float
) -> int:
    """Host memory of a training stage on accelerators, an upper bound: the worker's model and
    dense copy; FSDP ranks each load both before sharding them (train/rank.py); with offload
    cpu, the trained state of every rank (trained_state)."""
    copies = m.params * wb * (2 if teacher else 1)
    ranks = s.processes * copies if s.ranks else 0
    offloaded = sum(trained_state(m, trained, kept).values()) if s.offload == "cpu" else 0
    return copies + ranks + offloaded


def eval_bytes(m: ModelShape, wb: int, seqlen: int) -> dict:
    """Perplexity: one layer at a time on the device, one window, the head in chunks."""
    return {
        "layer weights": m.layer_linear * wb,
        "embeddings and head": m.embeddings * wb,
        "window activations": seqlen * layer_token_values(m) * FP32,
        "logits (chunk)": min(seqlen, CHUNK_TOKENS) * m.vocab * FP32 * 2,
    }


def model_bytes(m: ModelShape, wb: int, lazy: bool) -> int:
    """What the host holds of the model: all of it (eager), or embeddings and two layers."""
    if lazy:
        return m.embeddings * wb + 2 * m.layer_linear * wb
    return m.params * wb
