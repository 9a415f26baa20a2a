"""Simulators of the remote job APIs, one aiohttp application each."""
