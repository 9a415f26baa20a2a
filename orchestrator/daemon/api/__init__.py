"""The daemon's REST API under ``/api/v1``, described by the OpenAPI document it serves."""
