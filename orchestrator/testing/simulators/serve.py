"""``orchestrator simulate``: every API simulator on one port, each under its path prefix."""

from __future__ import annotations

import importlib

import anyio
import structlog
from aiohttp import web

from .base import Simulator

# module, prefix
SIMULATORS = (
    ("jobs_api", "/generic"),
    ("granta", "/granta"),
    ("ocapi", "/ocapi"),
    ("celonis", "/celonis"),
    ("trifacta", "/trifacta"),
    ("alation", "/alation"),
)


def build_simulators() -> list[Simulator]:
    sims = []
    for module_name, prefix in SIMULATORS:
        module = importlib.import_module(f"{__package__}.{module_name}")
        cls = next(
            obj
            for obj in vars(module).values()
            if isinstance(obj, type)
            and issubclass(obj, Simulator)
            and obj is not Simulator
            and obj.__module__ == module.__name__
        )
        sims.append(cls(prefix=prefix))
    return sims


def build_app(simulators: list[Simulator] | None = None) -> web.Application:
    root = web.Application()
    sims = simulators if simulators is not None else build_simulators()
    for sim in sims:
        root.add_subapp(sim.prefix, sim.build())

    async def index(request: web.Request) -> web.Response:
        return web.json_response({s.name: s.prefix for s in sims})

    root.router.add_get("/", index)
    return root


async def serve(host: str, port: int) -> None:
    log = structlog.get_logger("orchestrator.simulate")
    sims = build_simulators()
    runner = web.AppRunner(build_app(sims), handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    for sim in sims:
        log.info("simulator.serving", api=sim.name, url=f"http://{host}:{port}{sim.prefix}")
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
