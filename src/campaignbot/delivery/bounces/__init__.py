"""Bounces and complaints after acceptance: VERP tags, DSN/ARF parsing, mailbox readers,
relay webhook verification, and recording outcomes in the ledger.

`verp`, `dsn` and `webhooks` are pure; `mailbox` reads IMAP and Maildir; `recorder`
writes to the database; `reader` runs one pass of the bounce mailbox under a lock.
May import `email`, `subscribers`, `storage`, `errors` and `settings`.
"""
