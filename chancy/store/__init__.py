"""The only code that talks SQL: named queries and one method per query."""

from chancy.store.runner import Plan, Spec, run, run_sync
from chancy.store.store import Store

__all__ = ["Plan", "Spec", "Store", "run", "run_sync"]
