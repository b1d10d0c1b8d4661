"""What a subscriber reads: rendering, the per-recipient fast path, MIME, calendar, i18n, link tokens.

Pure: imports `campaignbot.campaign`, `campaignbot.errors` and `campaignbot.settings`;
no database, SMTP or HTTP.
"""
