"""Webhooks out: definitions, payloads, Standard Webhooks signing, SSRF guard, delivery."""
