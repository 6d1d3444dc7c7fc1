"""Adapters to other frameworks, shipped as ``rt_middleware.integrations`` (only these import them)."""
