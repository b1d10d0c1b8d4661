"""The running service and composition root: runtime snapshot, APScheduler glue, metrics, health.

The only package that wires the others together; only `cli` imports it.
"""
