"""Logs in tests go where pytest captures them: structlog hands each line to the standard
library's ``logging``, so a failing test shows its own lines under "Captured log call" and a
passing one prints nothing. The level is pytest's (``log_level`` in pyproject.toml, ``caplog``,
``--log-level``); secrets are masked as in production (:func:`orchestrator.logs.redact_processor`).
"""

from __future__ import annotations

import logging

import pytest
import structlog

from orchestrator import logs


def pytest_configure(config: pytest.Config) -> None:
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            structlog.processors.format_exc_info,
            logs.redact_processor,
            structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0),
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    # one line per request the simulators serve: noise beside the engine's own lines
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
