"""Models larger than memory: a skeleton on the meta device whose decoder layers are read from
the safetensors checkpoint one at a time (each file opened only for that read, so no mapping
stays resident), and a writer that saves each finished layer as its own shard at once.

`LazyWeights` is what `LayerStreamer` calls in lazy mode: `materialize(i)` before layer i
runs, `release(i)` after; `commit(i)` writes layer i to the output and from then on reads it
back from there (evaluation after pruning sees the pruned weights).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

from worker.engine.errors import ModelLoadError, UnsupportedModelError
from worker.engine.memory import release
from worker.engine.model.hf_types import HFModel

INDEX = "model.safetensors.index.json"
COPY_CHUNK = 8 << 20  # bytes per read when a tensor is copied file to file
SAFETENSORS_DTYPES = {
    "F64": 8,
    "F32": 4,
    "BF16": 2,
    "F16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}


TORCH_TO_SAFETENSORS = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


@dataclass(frozen=True)
class FileBytes:
    """A tensor's bytes as they lie in a safetensors file, copied file to file when written
    (an unchanged tensor never enters this process's memory)."""

    path: Path
    start: int
    nbytes: int
    dtype: str
    shape: list[int]


def write_safetensors(path: Path, tensors: dict, metadata: dict) -> int:
    """A safetensors file written tensor by tensor from the tensors' own memory or, for a
    `FileBytes`, from its file (no copy of the whole shard, as safetensors' save_file makes);
    returns the data bytes."""
    header: dict = {"__metadata__": metadata}
    offset, order = 0, []
    for name, t in tensors.items():
        if isinstance(t, FileBytes):
            size, dtype, shape = t.nbytes, t.dtype, t.shape
        else:
            t = t.detach().to("cpu").contiguous()
            size = t.numel() * t.element_size()
            dtype, shape = TORCH_TO_SAFETENSORS[t.dtype], list(t.shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
        order.append(t)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as fh:
        fh.write(len(head).to_bytes(8, "little"))
        fh.write(head)
        for t in order:
            if isinstance(t, FileBytes):
                _copy_range(t, fh)
            else:
                fh.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return offset


def _copy_range(src: FileBytes, out) -> None:
    with src.path.open("rb") as fh:
        done = 0
        while done < src.nbytes:
            chunk = os.pread(fh.fileno(), min(COPY_CHUNK, src.nbytes - done), src.start + done)
            if not chunk:
                raise OSError(f"{src.path.name} ends before its tensor data does")
            out.write(chunk)
            done += len(chunk)


SAFETENSORS_TO_TORCH = {v: k for k, v in TORCH_TO_SAFETENSORS.items()}


def _read_header(path: Path) -> tuple[dict, int]:
    """(a safetensors file's header, the file offset where its tensor data begins)."""
    with path.open("rb") as fh:
        header_len = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(header_len))
    return header, 8 + header_len


def _header_entry(path: Path, name: str) -> tuple[dict, int]:
    """(`name`'s header entry, the file offset where the tensor data begins)."""
    header, data_start = _read_header(path)
    return header[name], data_start


def _runs(rows: list[int]) -> list[tuple[int, int]]:
    """Sorted unique ints as [a, b) ranges of consecutive values."""
    out: list[tuple[int, int]] = []
    for r in rows:
        if out and out[-1][1] == r:
            out[-1] = (out[-1][0], r + 1)
        else:
            out.append((r, r + 1))
    return out


class LazyUnsupported(Exception):
    """This model cannot be streamed (its checkpoint names differ from the model's)."""


def weight_map(directory: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it (from the index, or the single file)."""
    directory = Path(directory)
    index = directory / INDEX
    if index.is_file():
        entries = json.loads(index.read_text())["weight_map"]
        return {k: directory / v for k, v in entries.items()}
    out: dict[str, Path] = {}
    for f in sorted(directory.glob("*.safetensors")):
        with safe_open(f, "pt") as fh:
            out.update({k: f for k in fh.keys()})  # noqa: SIM118 (safe_open is no dict)
    return out


def checkpoint_bytes(directory: Path, dtype: torch.dtype | None) -> int:
    """Bytes the checkpoint's tensors take in memory at `dtype` (None: as stored); a file
    that cannot be read is LazyUnsupported (the eager loader then names what is wrong)."""
    try:
        return _checkpoint_bytes(directory, dtype)
    except Exception as exc:  # a corrupt header, a missing shard: sized by nobody
        raise LazyUnsupported(f"cannot read the safetensors headers: {exc}") from exc


def _checkpoint_bytes(directory: Path, dtype: torch.dtype | None) -> int:
    total = 0
    for f in sorted(set(weight_map(directory).values())):
        header, _ = _read_header(f)
        for k, v in header.items():
            if k == "__metadata__":
                continue
            numel = 1
            for d in v["shape"]:
                numel *= d
            size = SAFETENSORS_DTYPES.get(v["dtype"], 4)
            floating = v["dtype"].startswith(("F", "BF"))
            total += numel * (dtype.itemsize if dtype is not None and floating else size)
    return total


def skeleton(path: Path, dtype: torch.dtype | None):
    """The model built on the meta device (no weight allocated; buffers such as rotary
    frequencies are real), trust_remote_code never."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    if dtype is None:
        dtype = getattr(config, "dtype", None) or torch.float32
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    try:
        with init_empty_weights():
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=False)
    except ValueError as exc:
        raise UnsupportedModelError(
            f"{path.name}: {type(config).__name__} is not a causal language model transformers "
            f"supports without remote code ({str(exc).splitlines()[0]})"
        ) from exc
    model.tie_weights()  # tied embeddings: one meta tensor under both names, loaded once
    model.eval()
    model.config.use_cache = False
    return model


def _set(model: nn.Module, name: str, value: torch.Tensor) -> None:
    """Put `value` at `name`; one Parameter object given to several names keeps them tied."""
    owner, _, leaf = name.rpartition(".")
    module = model.get_submodule(owner) if owner else model
    if leaf in module._parameters:
        if not isinstance(value, nn.Parameter):
            value = nn.Parameter(value, requires_grad=False)
        module._parameters[leaf] = value
    else:
        module._buffers[leaf] = value


def _like(old: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """`value` as the kind `old` is (a Parameter for a parameter), to share among aliases."""
    return nn.Parameter(value, requires_grad=False) if isinstance(old, nn.Parameter) else value


class LazyWeights:
    """Where each tensor of a meta-device `model` is read from, and the streaming output.

    `layers_prefix` names the decoder ModuleList ("model.layers"); everything outside it (the
    shell: embeddings, final norm, head) is materialized only for the stages that run it
    (`load_shell`…`release_shell`: capture, evaluation, the final write), not during the walk.
    """

    def __init__(self, model: HFModel, source: Path, layers_prefix: str, output: Path):
        self.model, self.prefix, self.output = model, layers_prefix, Path(output)
        self.files = weight_map(source)
        self.layers: nn.ModuleList = model.get_submodule(layers_prefix)
        self.n_shards = len(self.layers) + 1
        self.written: dict[str, str] = {}  # tensor name -> output shard file name
        self.total_size = 0
        self.committed: set[int] = set()
        self.on_commit: Callable[[int, nn.Module], None] | None = None
        self.live = 0  # decoder layers materialized now (tests assert on its maximum)
        self.max_live = 0
        self.shell_names = self._shell_names()
        self.shell_users = 0  # the shell is materialized while > 0
        self.shell_partial = False  # loaded for a capture: only its tokens' embedding rows

    # -- reading ---------------------------------------------------------------------------
    def _saved_names(self, names: list[str]) -> list[str]:
        """`names` minus aliases of an earlier name's tensor (tied weights), as
        save_pretrained writes them."""
        state = self.model.state_dict(keep_vars=True)
        seen, out = set(), []
        for n in names:
            t = state[n]
            if id(t) in seen:
                continue
            seen.add(id(t))
            out.append(n)
        return out

    def _shell_names(self) -> list[str]:
        state = self.model.state_dict(keep_vars=True)
        inside = self.prefix + "."
        return self._saved_names([n for n in state if not n.startswith(inside)])

    def layer_names(self, i: int) -> list[str]:
        state = self.layers[i].state_dict(keep_vars=True)
        return [f"{self.prefix}.{i}.{n}" for n in state]

    def check_coverage(self) -> None:
        """Every tensor of the model is in the checkpoint under its own name."""
        state = self.model.state_dict(keep_vars=True)
        names = [n for i in range(len(self.layers)) for n in self.layer_names(i)]
        names += [n for n in self.shell_names if state[n].is_meta]  # not computed (rotary)
        missing = [n for n in names if n not in self.files]
        if missing:
            raise LazyUnsupported(
                f"the checkpoint does not hold {missing[0]} under the model's own name "
                f"({len(missing)} such tensors)"
            )

    def _load(self, names: list[str], device: torch.device, copy: bool = True) -> None:
        """Materialize `names` from their files. With `copy`, into memory of their own: a
        tensor safetensors maps from the file would otherwise stay mapped and, once written
        (pruned), be held twice (the file's pages and the written copy)."""
        state = self.model.state_dict(keep_vars=True)
        by_file: dict[Path, list[str]] = {}
        for n in names:
            f = self._file_of(n)
            if f is None:
                if not state[n].is_meta:  # a buffer computed at construction (rotary)
                    continue
                raise LazyUnsupported(f"the checkpoint does not hold {n}")
            by_file.setdefault(f, []).append(n)
        for f, group in by_file.items():
            with safe_open(f, "pt", device="cpu") as fh:
                for n in group:
                    value = _like(state[n], fh.get_tensor(n).to(device, state[n].dtype, copy=copy))
                    for alias in self._aliases(state, n):
                        _set(self.model, alias, value)
        self._tie()

    def _aliases(self, state: dict, name: str) -> list[str]:
        t = state[name]
        return [n for n, v in state.items() if v is t]

    def _tie(self) -> None:
        """Shared parameters (tied embeddings) point at the one materialized tensor."""
        if getattr(self.model.config, "tie_word_embeddings", False):
            out, inp = self.model.get_output_embeddings(), self.model.get_input_embeddings()
            if out is not None and inp is not None and out.weight.is_meta:
                out.weight = inp.weight

    def state_dict(self) -> dict[str, Any]:
        """Where the layers written so far are (JSON): a resumed walk appends to them."""
        return {
            "written": self.written,
            "total_size": self.total_size,
            "committed": sorted(self.committed),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.written.update(state["written"])
        self.total_size = state["total_size"]
        self.committed.update(state["committed"])

    def _file_of(self, name: str) -> Path | None:
        if name in self.written:
            return self.output / self.written[name]
        return self.files.get(name)

    def _shell_as_stored(self) -> dict[str, FileBytes] | None:
        """The shell's tensors as byte ranges of the source files, when every one of them is
        stored at the run's dtype; None otherwise (then it is loaded and converted)."""
        state = self.model.state_dict(keep_vars=True)
        out = {}
        for n in self.shell_names:
            f = self._file_of(n)
            got = _stored(f, n, state[n]) if f is not None else None
            if got is None:
                return None
            out[n] = got
        return out

    def load_shell(self, device: torch.device, tokens: torch.Tensor | None = None) -> None:
        """The shell, for a stage that runs it: on the CPU mapped from the file (read, never
        written), elsewhere copied to the device. With `tokens` (a capture, which runs only
        the input embedding of those token ids), only their rows of the input embedding are
        read into memory: on the CPU the rest of the table is never touched, so it takes no
        memory (a mapped table would be paged in nearly whole by the kernel's fault-around)."""
        if self.shell_users and (tokens is not None) != self.shell_partial:
            raise RuntimeError("the shell is loaded for another use")
        if self.shell_users == 0:
            embed = self._embedding_name() if tokens is not None and device.type == "cpu" else None
            rest = [n for n in self.shell_names if n != embed]
            self._load(rest, device, copy=device.type != "cpu")
            if embed is not None:
                self._load_rows(embed, torch.unique(tokens))
            self.shell_partial = tokens is not None
        self.shell_users += 1

    def _embedding_name(self) -> str | None:
        emb = self.model.get_input_embeddings()
        if not isinstance(emb, nn.Embedding):
            return None
        state = self.model.state_dict(keep_vars=True)
        return next((n for n in self.shell_names if state[n] is emb.weight), None)

    def _load_rows(self, name: str, rows: torch.Tensor) -> None:
        """Rows `rows` (sorted, unique) of the 2-D tensor `name`, read with pread (no mapping)
        into a table whose other rows are left unwritten."""
        state = self.model.state_dict(keep_vars=True)
        like = state[name]
        f = self._file_of(name)
        if f is None:
            raise LazyUnsupported(f"the checkpoint does not hold {name}")
        entry, data_start = _header_entry(f, name)
        stored = SAFETENSORS_TO_TORCH[entry["dtype"]]
        row_bytes = int(like.shape[1]) * stored.itemsize
        base = data_start + entry["data_offsets"][0]
        table = torch.empty(like.shape, dtype=like.dtype)  # untouched pages stay unallocated
        with f.open("rb") as fh:
            for a, b in _runs(rows.tolist()):
                raw = os.pread(fh.fileno(), (b - a) * row_bytes, base + a * row_bytes)
                part = torch.frombuffer(bytearray(raw), dtype=stored).view(b - a, -1)
                table[a:b] = part.to(like.dtype)
        value = _like(like, table)
        for alias in self._aliases(state, name):
            _set(self.model, alias, value)

    def release_shell(self) -> None:
        self.shell_users -= 1
        if self.shell_users:
            return
        self.shell_partial = False
        state = self.model.state_dict(keep_vars=True)
        for n in self.shell_names:
            meta = _like(state[n], torch.empty_like(state[n], device="meta"))
            for alias in self._aliases(state, n):  # tied names stay one tensor
                _set(self.model, alias, meta)
        release()

    def materialize(self, i: int, device: torch.device) -> nn.Module:
        self._load(self.layer_names(i), device)
        self.live += 1
        self.max_live = max(self.max_live, self.live)
        return self.layers[i]

    def release(self, i: int) -> None:
        layer = self.layers[i]
        for name, t in list(layer.state_dict(keep_vars=True).items()):
            _set(layer, name, torch.empty_like(t, device="meta"))
        self.live -= 1
        release()  # the layer's freed pages go back to the OS before the next one loads

    # -- writing ---------------------------------------------------------------------------
    def shard(self, k: int) -> str:
        return f"model-{k:05d}-of-{self.n_shards:05d}.safetensors"

    def _write(self, k: int, tensors: dict[str, torch.Tensor] | dict[str, FileBytes]) -> None:
        self.output.mkdir(parents=True, exist_ok=True)
        name = self.shard(k)
        tmp = self.output / (name + ".tmp")
        self.total_size += write_safetensors(tmp, tensors, {"format": "pt"})
        tmp.replace(self.output / name)
        for n in tensors:
            self.written[n] = name

    def commit(self, i: int) -> None:
        """Layer i (materialized) is final: check it (`on_commit`) and write it as a shard."""
        if self.on_commit is not None:
            self.on_commit(i, self.layers[i])
        state = self.layers[i].state_dict()
        self._write(i + 1, {f"{self.prefix}.{i}.{n}": t for n, t in state.items()})
        self.committed.add(i)

    def finish(self, device: torch.device) -> None:
        """Write the layers nothing committed (as read), the shell and the index."""
        for i in range(len(self.layers)):
            if i not in self.committed:
                self.materialize(i, device)
                try:
                    self.commit(i)
                finally:
                    self.release(i)
        shell = self._shell_as_stored()
        if shell is not None:  # the shell as read: copied from its files, never loaded
            self._write(self.n_shards, shell)
        else:
            self.load_shell(torch.device("cpu"))
            try:
                state = self.model.state_dict()
                self._write(self.n_shards, {n: state[n] for n in self.shell_names})
            finally:
                self.release_shell()
        index = {
            "metadata": {"total_size": self.total_size},
            "weight_map": dict(sorted(self.written.items())),
        }
        (self.output / INDEX).write_text(json.dumps(index, indent=2) + "\n")
        self.model.config.save_pretrained(self.output)
        gen = getattr(self.model, "generation_config", None)
        if gen is not None and self.model.can_generate():
            gen.save_pretrained(self.output)


def _stored(path: Path, name: str, like: torch.Tensor) -> FileBytes | None:
    """`name`'s bytes in `path` when they are stored as `like` is (dtype, shape), else None."""
    entry, data_start = _header_entry(path, name)
    if entry["dtype"] != TORCH_TO_SAFETENSORS.get(like.dtype) or entry["shape"] != list(like.shape):
        return None
    a, b = entry["data_offsets"]
    return FileBytes(path, data_start + a, b - a, entry["dtype"], entry["shape"])


def open_lazy(path: Path, dtype: torch.dtype | None, layers_of, output: Path):
    """(meta model, LazyWeights) or LazyUnsupported; `layers_of(model)`
    finds the decoder layers' (prefix, ModuleList)."""
    model = skeleton(path, dtype)
    prefix, _ = layers_of(model)
    try:
        weights = LazyWeights(model, path, prefix, output)
        weights.check_coverage()
    except OSError as exc:
        raise ModelLoadError(f"{path.name}: cannot read weights: {exc}") from exc
    return model, weights
