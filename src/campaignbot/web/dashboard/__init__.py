"""The organizer dashboard (`/admin`) and the JSON API (`/api`) of the admin listener.

May import `campaignbot.email`, `campaignbot.subscribers`, `campaignbot.campaign`,
`campaignbot.storage`; never `delivery`, `service` or `cli` (the ledger is read
through the `AlertReader` protocol in `context`).
"""

from __future__ import annotations
