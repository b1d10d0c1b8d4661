"""Subscribers: the validated model and the store (its tables' only SQL owner).

May import `campaignbot.campaign` (audience rules), `campaignbot.storage` and `campaignbot.errors`.
"""
