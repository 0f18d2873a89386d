"""Receiving a video upload safely: streamed multipart parsing, a size cap, magic-byte sniffing.

:func:`receive_upload` parses ``multipart/form-data`` chunk by chunk from the request stream
(python-multipart's push parser) and writes the ``file`` field straight into a file in a
private folder; it stops with :class:`UploadError` (413) the moment the cap is passed,
(415) as soon as the first bytes are not a known video container, and (400) when the file
comes in a field not named ``file`` or is empty. Nothing is buffered whole
in memory, and the client's file name is only ever used as display text.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

SNIFF_BYTES = 512
FIELD = b"file"
MAX_OTHER_FIELD = 64 * 1024  # bytes tolerated in any non-file form field


class UploadError(Exception):
    """An upload rejected with an HTTP status and a message safe to show the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def sniff_container(head: bytes) -> str | None:
    """The container named by a file's first bytes (``mp4``, ``matroska``, ``avi``...) or None."""
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"pnot"):
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith((b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")):
        return "mpeg"
    if head[:1] == b"\x47" and head[188:189] == b"\x47":
        return "mpegts"
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "asf"
    if head.startswith(b"OggS"):
        return "ogg"
    return None


SUFFIX = {"mp4": ".mp4", "matroska": ".mkv", "avi": ".avi", "mpeg": ".mpg", "mpegts": ".ts",
          "flv": ".flv", "asf": ".wmv", "ogg": ".ogv"}


def display_name(filename: str | None) -> str:
    """The client's file name reduced to safe display text (no folders, no control chars)."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = re.sub(r"[\x00-\x1f\x7f<>\"'`]", "", name).strip()[:120]
    return name or "upload"


class PrivateDir:
    """A ``mkdtemp`` folder (mode 0700) removed when its last user releases it.

    The request handler holds one reference and a detection job another, so the folder
    goes away whichever finishes last (a timed-out job keeps reading its file).
    """

    def __init__(self, root: str | None = None):
        self.path = Path(tempfile.mkdtemp(prefix="dfd-upload-", dir=root))
        self.path.chmod(0o700)
        self._users, self._lock = 1, threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            self._users += 1

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            shutil.rmtree(self.path, ignore_errors=True)


class _Receiver:
    """python-multipart callbacks writing the ``file`` part into ``folder``."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder, self.max_bytes = folder, max_bytes
        self.size, self.path, self.filename, self.container = 0, None, None, None
        self._fh, self._head, self._in_file, self._other = None, b"", False, 0
        self._field, self._value, self._headers = b"", b"", {}
        self._part = ""  # the current part's field name, as display text

    def callbacks(self) -> dict:
        return {"on_part_begin": self._begin, "on_header_field": self._hfield,
                "on_header_value": self._hvalue, "on_header_end": self._hend,
                "on_headers_finished": self._hdone, "on_part_data": self._data,
                "on_part_end": self._end}

    def _begin(self):
        self._headers, self._field, self._value, self._in_file = {}, b"", b"", False

    def _hfield(self, data, start, end):
        self._field += data[start:end]

    def _hvalue(self, data, start, end):
        self._value += data[start:end]

    def _hend(self):
        self._headers[self._field.strip().lower()] = self._value.strip()
        self._field, self._value = b"", b""

    def _hdone(self):
        from python_multipart.multipart import parse_options_header

        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        self._part = re.sub(r"[\x00-\x1f\x7f<>\"'`]", "", name)[:40]
        if params.get(b"name") != FIELD and b"filename" in params:
            raise UploadError(400, f"the file was sent in the form field '{self._part}': "
                                   "send it in a field named 'file'")
        if params.get(b"name") == FIELD and self.path is None:
            self._in_file = True
            self.filename = params.get(b"filename", b"").decode("utf-8", "replace")
            self.path = self.folder / "upload.bin"
            self._fh = open(self.path, "wb")

    def _data(self, data, start, end):
        chunk = data[start:end]
        if not self._in_file:
            self._other += len(chunk)
            if self._other > MAX_OTHER_FIELD:
                raise UploadError(400, f"the form field '{self._part}' is larger than "
                                       f"{MAX_OTHER_FIELD // 1024} KB: send the video in a "
                                       "field named 'file'")
            return
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise UploadError(413, f"upload larger than the limit of {self.max_bytes // 2**20} MB")
        if self.container is None and len(self._head) < SNIFF_BYTES:
            self._head += chunk[:SNIFF_BYTES - len(self._head)]
            if len(self._head) >= SNIFF_BYTES:
                self._sniff()
        self._fh.write(chunk)

    def _sniff(self):
        self.container = sniff_container(self._head)
        if self.container is None:
            raise UploadError(415, "not a video: the file does not start like MP4/MOV, "
                                   "Matroska/WebM, AVI, MPEG, FLV, ASF or Ogg")

    def _end(self):
        if self._in_file:
            self._fh.close()
            self._fh = None
            self._in_file = False
            if self.size == 0:
                raise UploadError(400, "the uploaded file is empty")
            if self.container is None:
                self._sniff()

    def close(self):
        if self._fh is not None:
            self._fh.close()


async def receive_upload(request, folder: Path, max_bytes: int) -> tuple[Path, str, str]:
    """Stream the request's ``file`` field into ``folder``; returns (path, display name, container).

    Raises :class:`UploadError` with 400 (not multipart, no ``file`` field, a file in another
    field, an empty file), 413 (too large) or 415 (not a video).
    """
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadError(400, "send the video as multipart/form-data in a field named 'file'")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + MAX_OTHER_FIELD:
        raise UploadError(413, f"upload larger than the limit of {max_bytes // 2**20} MB")
    rx = _Receiver(folder, max_bytes)
    parser = MultipartParser(params[b"boundary"], rx.callbacks())
    try:
        async for chunk in request.stream():
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except FormParserError:
        raise UploadError(400, "malformed multipart body") from None
    finally:
        rx.close()
    if rx.path is None:
        raise UploadError(400, "no field named 'file' in the upload")
    if rx.size == 0:
        raise UploadError(400, "the uploaded file is empty")
    final = rx.path.with_suffix(SUFFIX[rx.container])
    rx.path.rename(final)
    return final, display_name(rx.filename), rx.container
