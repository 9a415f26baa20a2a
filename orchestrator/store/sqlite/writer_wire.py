"""The writer's wire: frames of a 4-byte length and a :mod:`marshal` value, read from a pipe, and
error texts that name the database file.

Standard library only: a sibling of :mod:`writer`, imported by it also in the writer's own
process (``python -I -S``, its folder on the path)."""

from __future__ import annotations

import marshal
import os
import select
import struct

TYPE_CHECKING = False  # no typing at run time: see writer.py
if TYPE_CHECKING:
    from typing import Any

HEADER = struct.Struct("<I")


def error_text(path: str, text: str) -> str:
    """A database error as the store reports it, naming the file."""
    if "file is not a database" in text or "malformed" in text:
        return f"{path}: not an orchestrator database ({text})"
    if "readonly" in text or "unable to open" in text or "disk I/O" in text:
        return f"{path}: cannot write {path} ({text})"
    return f"{path}: {text}"


def frame(value: Any) -> bytes:
    data = marshal.dumps(value)
    return HEADER.pack(len(data)) + data


class Frames:
    """Frames read from a file descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()
        self.eof = False
        self._poller: Any = None  # see wake_on
        self._wake = -1

    def wake_on(self, wake: int) -> None:
        """Wait for data on the eventfd ``wake``, which the sender signals after each write,
        rather than on the pipe (see ``client.Launched``): the pipe only for its end (its
        hang-up), which a write does not signal."""
        self._poller = select.poll()
        self._poller.register(wake, select.POLLIN)
        self._poller.register(self.fd, 0)  # POLLHUP and POLLERR only
        self._wake = wake

    def _wait(self) -> None:
        """Until the pipe has data or its end, where it is waited for on the wake-up counter."""
        poller = self._poller
        if poller is None:
            return  # the read blocks
        while not select.select([self.fd], [], [], 0)[0]:
            for fd, _ in poller.poll():
                if fd == self._wake:
                    os.eventfd_read(self._wake)  # reset: the next write signals it again
                else:  # the sender's end closed (or failed): the read says which
                    return

    def _complete(self) -> bool:
        buffer = self._buffer
        return len(buffer) >= 4 and len(buffer) >= 4 + HEADER.unpack_from(buffer)[0]

    def _fill(self) -> None:
        data = os.read(self.fd, 1 << 20)
        if not data:
            self.eof = True
        self._buffer += data

    def next(self) -> Any:
        """The next frame, waiting for it; ``None`` at the end of the input."""
        while not self._complete():
            if self.eof:
                return None
            self._wait()
            self._fill()
        return self._pop()

    def next_ready(self) -> Any:
        """The next frame if it is already here (read or readable), else ``None``."""
        while not self._complete():
            if self.eof or not select.select([self.fd], [], [], 0)[0]:
                return None
            self._fill()
        return self._pop()

    def available(self) -> list[Any]:
        """The frames complete after one read of a non-blocking descriptor (``eof`` set at
        its end)."""
        try:
            self._fill()
        except BlockingIOError:
            pass
        out = []
        while self._complete():
            out.append(self._pop())
        return out

    def _pop(self) -> Any:
        buffer = self._buffer
        size = HEADER.unpack_from(buffer)[0]
        value = marshal.loads(memoryview(buffer)[4 : 4 + size])
        del buffer[: 4 + size]
        return value
