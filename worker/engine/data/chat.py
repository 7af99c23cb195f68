"""A record as token ids and which of them train: plain text trains whole; a chat or a prompt
and completion is rendered with the tokenizer's chat template (or, without one, the fallback
format below) and only the assistant's answers train.

Fallback format (a tokenizer with no chat template): a prompt record is the prompt followed
by the completion, verbatim; a chat is each turn as "### User:\\n{content}\\n\\n" (System,
Assistant alike), the assistant's content being what trains.
"""

from __future__ import annotations

from service.records import Record
from worker.engine.errors import CalibrationError

Segments = list[tuple[str, bool]]  # (text, trains?) in order


def record_tokens(tokenizer, record: Record, tokenize) -> tuple[list[int], list[bool]]:
    """(token ids, trains? per token) of one record; `tokenize(text)` gives the ids of plain
    text as the rest of the engine does. Each segment is tokenized on its own, so the mask
    falls exactly on the answer's tokens."""
    if not record.is_chat:
        ids = tokenize(record.text)[0].tolist()
        return ids, [True] * len(ids)
    ids, trains = [], []
    for text, trained in segments(tokenizer, record):
        part = tokenizer(text, add_special_tokens=False).input_ids if text else []
        ids += part
        trains += [trained] * len(part)
    return ids, trains


def segments(tokenizer, record: Record) -> Segments:
    if getattr(tokenizer, "chat_template", None):
        return templated(tokenizer, record)
    return fallback(record)


def fallback(record: Record) -> Segments:
    if record.prompt:
        (_, prompt), (_, completion) = record.messages
        return [(prompt, False), (completion, True)]
    out: Segments = []
    for role, content in record.messages:
        head = f"### {role.capitalize()}:\n"
        if role == "assistant":
            out += [(head, False), (content, True), ("\n\n", False)]
        else:
            out.append((f"{head}{content}\n\n", False))
    return out


def templated(tokenizer, record: Record) -> Segments:
    """The chat template's text cut at each assistant turn: the text before it (with the
    generation prompt) does not train, the turn itself (with its end marker) does."""
    msgs = [{"role": r, "content": c} for r, c in record.messages]
    out: Segments = []
    done = ""
    for i, (role, _) in enumerate(record.messages):
        if role != "assistant":
            continue
        before = _render(tokenizer, msgs[:i], True, record) if i else ""
        after = _render(tokenizer, msgs[: i + 1], False, record)
        if not (before.startswith(done) and after.startswith(before)):
            raise CalibrationError(
                f"{record.where}: the tokenizer's chat template does not render this chat "
                "turn by turn (an earlier turn changes when a later one is added), so the "
                "answers cannot be told from the prompt"
            )
        out += [(before[len(done) :], False), (after[len(before) :], True)]
        done = after
    full = _render(tokenizer, msgs, False, record)
    if full.startswith(done) and len(full) > len(done):
        out.append((full[len(done) :], False))
    return out


def _render(tokenizer, msgs: list[dict], generation: bool, record: Record) -> str:
    try:
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=generation)
    except Exception as exc:  # a template's own error (jinja raise_exception) names the rule
        raise CalibrationError(
            f"{record.where}: the tokenizer's chat template refused this chat: {exc}"
        ) from None
