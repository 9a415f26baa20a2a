"""Text for a terminal: whatever a remote, a stored run or a DAG file hands us is shown with its
control, format (bidi) and other non-printable characters escaped, so that it cannot move the
cursor, recolour the screen, reorder a line or hide what follows it."""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` with each non-printable character as its escape (``\\x1b``, ``\\u202e``);
    newlines kept as they are when ``keep_newlines`` (a message of several lines)."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() or (keep_newlines and char == "\n") else _escape(char)
        for char in text
    )


def name_problem(what: str, name: object) -> str | None:
    """Why ``name`` (a job id, a pool, connection or DAG name) cannot be shown on a terminal as
    it is: a control, format (bidi) or other non-printable character; ``None`` if it can."""
    if not isinstance(name, str):
        return f"expected a string {what}, got {name!r}"
    for char in name:
        if not char.isprintable():
            return (
                f"the {what} {name!r} has the non-printable character U+{ord(char):04X}; "
                "use printable characters only"
            )
    return None
