"""The records of a `.jsonl` training file: plain text, a chat, or a prompt and its completion.

One line, one JSON object, in one of three formats (as language-model trainers take them):
`{"text": ...}`, `{"messages": [{"role", "content"}, ...]}` or `{"prompt", "completion"}`.
Pure Python (the API checks uploads with it; the worker renders and tokenizes them).
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("system", "user", "assistant")
FORMATS = (
    '{"text": "..."}, {"messages": [{"role": "user", "content": "..."}, {"role": '
    '"assistant", "content": "..."}]} or {"prompt": "...", "completion": "..."}'
)


class RecordError(ValueError):
    """A line that fits no format; the message names the line and what is allowed."""


@dataclass(frozen=True)
class Record:
    """One training record. `text`: the whole text trains. `messages`: a chat (role, content)
    pairs, the assistant turns train. `prompt`: a completion record, `messages` holds it as
    one user turn and one assistant turn."""

    text: str | None = None
    messages: tuple[tuple[str, str], ...] = ()
    prompt: bool = False
    where: str = ""  # e.g. 'chat.jsonl line 3', for errors found later (rendering)

    @property
    def is_chat(self) -> bool:
        return self.text is None


def parse_record(row: object, where: str) -> Record:
    """The record of one decoded JSON line; RecordError naming `where` (e.g. 'd.jsonl line 3')
    and the formats allowed."""

    def bad(why: str) -> RecordError:
        return RecordError(f"{where}: {why}; each line is one of {FORMATS}")

    if not isinstance(row, dict):
        raise bad("not a JSON object")
    keys = set(row)
    if keys >= {"text"} and not keys & {"messages", "prompt", "completion"}:
        if not isinstance(row["text"], str):
            raise bad('"text" is not a string')
        return Record(text=row["text"], where=where)
    if "messages" in keys and not keys & {"text", "prompt", "completion"}:
        return Record(messages=_messages(row["messages"], bad), where=where)
    if keys >= {"prompt", "completion"} and not keys & {"text", "messages"}:
        prompt, completion = row["prompt"], row["completion"]
        if not isinstance(prompt, str) or not isinstance(completion, str):
            raise bad('"prompt" and "completion" must be strings')
        if not completion:
            raise bad('"completion" is empty: nothing to train on')
        return Record(
            messages=(("user", prompt), ("assistant", completion)), prompt=True, where=where
        )
    raise bad(f"fields {sorted(keys)} fit no format")


def _messages(raw: object, bad) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list) or not raw:
        raise bad('"messages" is not a non-empty list')
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise bad(f'messages[{i}] is not an object with a string "content"')
        if m.get("role") not in ROLES:
            raise bad(f"messages[{i}].role {m.get('role')!r} is not one of {', '.join(ROLES)}")
        out.append((m["role"], m["content"]))
    if not any(role == "assistant" for role, _ in out):
        raise bad('"messages" has no assistant turn: nothing to train on')
    return tuple(out)
