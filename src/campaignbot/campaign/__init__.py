"""The organizer's campaign file: model, loading and validation, pure planning.

Pure: imports only `campaignbot.errors` and the standard library (no I/O library).
"""
