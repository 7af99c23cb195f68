"""Server paths never reach a user: an absolute path in a job's error or events is cut to its
last two components (e.g. `.../models/tiny-llama`), which name what the user gave."""

from __future__ import annotations

import re

# an absolute path: not preceded by a word char, "." , ":" or "/" (so not org/name or a URL)
_ABS = re.compile(r"(?<![\w.:/~])/(?:[^\s'\"/:,;()\[\]]+/)*[^\s'\"/:,;()\[\]]*")


def _short(match: re.Match) -> str:
    parts = [p for p in match.group(0).split("/") if p]
    return ".../" + "/".join(parts[-2:]) if len(parts) > 2 else match.group(0)


def redact_paths(text: str) -> str:
    return _ABS.sub(_short, text)
