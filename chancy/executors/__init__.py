"""Executors run claimed jobs and report outcomes; they never touch the database."""
