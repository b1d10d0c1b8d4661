"""Getting alerts out: the ledger (deliveries, alerts, event versions), the sender, transports, retry policy.

May import `campaignbot.email`, `campaignbot.subscribers`, `campaignbot.campaign`,
`campaignbot.storage`, `campaignbot.settings` and `campaignbot.errors`; never `web`, `service` or `cli`.
"""
