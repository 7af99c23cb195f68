"""Training records as language-model trainers take them: short records packed into windows
(joined with EOS, so every token trains), long ones split across windows; chats and prompts
with their completions trained on the answers only; a line that fits no format is named."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer

from service.schemas import EvalSpec, PruneSpec
from worker.engine.data.calibration import tokenize, training_ids, training_windows
from worker.engine.data.packing import IGNORE, pack, stream
from worker.engine.data.records import read_records
from worker.engine.errors import CalibrationError
from worker.engine.run import run
from worker.engine.train.objective import Objective


def windows_and_labels(*args):
    w = training_windows(*args)
    return w.rows(0, len(w)), w.labels(0, len(w))


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def stream_of(tok, path):
    return stream(tok, read_records(path), lambda t: tokenize(tok, t), "test", lambda: None)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def tok(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir("llama"))


def test_short_records_are_packed_and_every_token_is_in_a_window(tmp_path, tok):
    texts = [f"record {i} says {'ab' * (i % 5)}" for i in range(30)]  # all shorter than 32
    path = write_jsonl(tmp_path / "short.jsonl", [{"text": t} for t in texts])
    eos = torch.tensor([tok.eos_token_id])
    expected = torch.cat([torch.cat([tokenize(tok, t)[0], eos]) for t in texts])
    k, n = -(-expected.numel() // 32), expected.numel()
    ids, labels = windows_and_labels(tok, str(path), path, k, 32, 0, 0.0)
    assert ids.shape == (k, 32)
    # the packed windows hold the records joined by EOS in order, then padding that does not
    # train; drawing k windows gives each of them once
    windows, wlabels = pack(*stream_of(tok, path), 32, tok.eos_token_id)
    assert torch.equal(windows.flatten()[:n], expected)
    assert torch.equal(wlabels.flatten()[:n], expected)  # plain text: every token trains
    assert (wlabels.flatten()[n:] == IGNORE).all()
    assert sorted(map(tuple, ids.tolist())) == sorted(map(tuple, windows.tolist()))
    assert sorted(map(tuple, labels.tolist())) == sorted(map(tuple, wlabels.tolist()))
    assert training_ids(tok, str(path), path, 3 * k, 32, 0, 0.0).shape == (3 * k, 32)


def test_a_long_record_is_split_across_windows(tmp_path, tok):
    path = write_jsonl(tmp_path / "long.jsonl", [{"text": "x" * 100}, {"text": "y" * 10}])
    ids, labels = windows_and_labels(tok, str(path), path, 4, 32, 0, 0.0)
    text = tok.decode(ids.flatten()).replace(" ", "")
    assert text.count("x") == 100 and text.count("y") == 10


def chat_rows():
    return [
        {
            "messages": [
                {"role": "user", "content": "QQQQ"},
                {"role": "assistant", "content": "777"},
                {"role": "user", "content": "qq"},
                {"role": "assistant", "content": "88"},
            ]
        },
        {"prompt": "PPPPP", "completion": "999"},
    ]


@pytest.mark.parametrize("template", [None, CHATML])
def test_chat_and_completion_records_train_on_the_answers_only(tmp_path, tok, template):
    tok.chat_template = template
    path = write_jsonl(tmp_path / "chat.jsonl", chat_rows())
    ids, labels = windows_and_labels(tok, str(path), path, 1, 256, 0, 0.0)
    trained = tok.decode(ids[labels != IGNORE]).replace(" ", "")  # the tiny tokenizer: chars
    prompt = tok.decode(ids[(labels == IGNORE) & (ids != tok.eos_token_id)]).replace(" ", "")
    for answer in ("777", "88", "999"):
        assert answer in trained
    assert not set("QqP") & set(trained)  # no prompt token trains
    assert "QQQQ" in prompt and "qq" in prompt and "PPPPP" in prompt
    assert not set("789") & set(prompt)
    if template:
        assert "<|im_end|>" in trained and "<|im_start|>assistant" in prompt


def test_the_objective_ignores_the_prompt_positions():
    torch.manual_seed(0)
    ids = torch.randint(0, 16, (1, 8))
    labels = ids.clone()
    labels[0, :5] = IGNORE  # the targets of positions 0..3 are prompt tokens
    student = torch.randn(1, 8, 16, requires_grad=True)
    teacher = torch.randn(1, 8, 16)
    for objective in (Objective(False, 2.0, 1.0), Objective(True, 2.0, 0.5)):
        student.grad = None
        objective(student, teacher, ids, labels).backward()
        assert (student.grad[0, :4] == 0).all() and (student.grad[0, 4:7] != 0).any()


@pytest.mark.parametrize(
    "line, says",
    [
        ('{"foo": 1}', "fit no format"),
        ('{"messages": [{"role": "user", "content": "x"}]}', "no assistant turn"),
        ('{"prompt": "a"}', "fit no format"),
        ("[1]", "not a JSON object"),
        ('{"messages": [{"role": "bot", "content": "x"}]}', "role 'bot'"),
        ("{", "not JSON"),
    ],
)
def test_a_record_that_fits_no_format_is_named_by_its_line(tmp_path, tok, line, says):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n\n' + line + "\n")
    with pytest.raises(CalibrationError, match=f"bad.jsonl line 3: .*{says}") as err:
        training_windows(tok, str(path), path, 2, 16, 0, 0.0)
    assert '{"prompt": "...", "completion": "..."}' in str(err.value)


def test_a_chat_fine_tune_reports_held_out_perplexity_on_the_answers(tmp_path, tiny_model_dir):
    rows = [
        {"prompt": f"question {i}: {'why ' * (i % 4)}?", "completion": f"answer {i} ok"}
        for i in range(40)
    ]
    path = write_jsonl(tmp_path / "qa.jsonl", rows)
    spec = PruneSpec(
        model=str(tiny_model_dir("llama")),
        method="magnitude",
        sparsity=0.5,
        device="cpu",
        recovery={"dataset": str(path), "steps": 3, "seqlen": 64, "batch_size": 2, "lr": 1e-3},
        evaluation=EvalSpec(dataset=str(path.with_suffix(".txt")), seqlen=32, max_windows=2),
    )
    path.with_suffix(".txt").write_text("evaluation text " * 40)
    report = run(spec, tmp_path / "out")
    held = report.heldout
    assert held is not None and "the answers' tokens" in held.dataset
    assert held.dense > 1 and held.pruned > 1 and "recover" in held.after
    assert len(report.training[0].loss) == 3
