"""The ``orchestrator`` command."""

import sys


def _structlog_without_rich() -> None:
    """Import structlog without rich: structlog imports rich, when it is installed, for its
    pretty tracebacks, and that import (with attrs and pygments) took a fifth of a run's
    start-up. The command's logs never use it: they format exceptions before rendering
    (``format_exc_info`` in :func:`orchestrator.logs.configure`), as text in JSON or on the
    console. ``rich`` stays importable for anyone else; only structlog's own defaults (its
    console renderer's exception formatter, unused here) fall back to the plain ones. A
    process that imported structlog before (a program calling this module's ``main``) keeps
    it as it is."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # `import rich` fails meanwhile
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]


_structlog_without_rich()

from .main import build_parser, main  # noqa: E402 - after structlog's import

__all__ = ["build_parser", "main"]
