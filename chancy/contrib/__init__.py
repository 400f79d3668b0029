"""Integrations with frameworks (each needs its extra)."""
