"""Read one file part of a multipart/form-data body chunk by chunk, never holding it whole
(FastAPI's UploadFile spools the entire body before a handler can check its size).
"""

from __future__ import annotations

from python_multipart.multipart import MultipartParser, parse_options_header

from service.errors import ApiError

MAX_FIELD_BYTES = 4096  # non-file parts are ignored; this bounds what they may hold


class FilePart:
    """Feed body chunks; get back the bytes of the part named `field` that carries a filename.

    `filename` is set as soon as that part's headers are parsed (before its data).
    """

    def __init__(self, content_type: str, field: str):
        kind, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise ApiError(422, "send the file as multipart/form-data with a boundary", field)
        self.field, self.filename, self.done = field, None, False
        self._out: list[bytes] = []
        self._headers: dict[bytes, bytes] = {}
        self._name, self._value = b"", b""
        self._in_file, self._other = False, 0
        self._parser = MultipartParser(boundary, self._callbacks())

    def feed(self, chunk: bytes) -> list[bytes]:
        """The file's bytes found in `chunk` (possibly none)."""
        try:
            self._parser.write(chunk)
        except ApiError:
            raise
        except Exception as exc:  # python-multipart raises several error types for bad bodies
            raise ApiError(
                422, f"the body is not valid multipart/form-data ({exc})", "body"
            ) from None
        out, self._out = self._out, []
        return out

    def finish(self) -> None:
        """Raise 422 unless exactly one complete file part named `field` was read."""
        self._parser.finalize()
        if self.filename is None or not self.done:
            raise ApiError(
                422, f"{self.field}: a file part named {self.field!r} is required", self.field
            )

    def _callbacks(self) -> dict:
        def header_field(data, start, end):
            self._name += data[start:end]

        def header_value(data, start, end):
            self._value += data[start:end]

        def header_end():
            self._headers[self._name.lower()] = self._value
            self._name, self._value = b"", b""

        def part_begin():
            self._headers, self._in_file = {}, False

        return {
            "on_part_begin": part_begin,
            "on_header_field": header_field,
            "on_header_value": header_value,
            "on_header_end": header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._part_end,
        }

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name, filename = options.get(b"name"), options.get(b"filename")
        if name != self.field.encode() or filename is None:
            return
        if self.filename is not None:
            raise ApiError(422, f"{self.field}: send one file per upload", self.field)
        self.filename, self._in_file = filename.decode("utf-8", "replace"), True

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._out.append(data[start:end])
            return
        self._other += end - start
        if self._other > MAX_FIELD_BYTES:
            raise ApiError(
                413, f"form fields besides {self.field!r} exceed {MAX_FIELD_BYTES} bytes", "body"
            )

    def _part_end(self) -> None:
        if self._in_file:
            self.done, self._in_file = True, False
