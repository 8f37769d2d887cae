"""Fixtures shared between the unit tests: the pipeline's world (fakes for VIP and the wallet, the
shipped rules, a real Redis and the ledger), defined beside its first tests."""

from tests.unit.test_pipeline_flow import book, world

__all__ = ["book", "world"]
