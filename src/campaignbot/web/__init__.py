"""The public web app: pages, forms, CSRF and rate limiting.

May import `campaignbot.email`, `campaignbot.subscribers`, `campaignbot.campaign`,
`campaignbot.settings` and `campaignbot.errors`; the service hands it what it needs, so it never
imports `service`, `delivery` or `cli`.
"""
