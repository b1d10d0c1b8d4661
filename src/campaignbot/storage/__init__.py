"""The database: engine from a URL (SQLite or PostgreSQL), tables, Alembic migrations.

Imports only `campaignbot.errors`; everything above reaches SQL through a store or the ledger.
"""
