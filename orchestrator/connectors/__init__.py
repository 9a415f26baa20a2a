"""Connectors: one module per remote API, plus shared HTTP plumbing."""
