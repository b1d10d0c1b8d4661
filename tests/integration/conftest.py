"""The service fixtures of test_service.py, shared with the other in-process service tests."""

from __future__ import annotations

from tests.integration.test_service import clock, make_service

__all__ = ["clock", "make_service"]
