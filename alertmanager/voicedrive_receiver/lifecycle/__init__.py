"""Incident lifecycle: on-call schedule, business hours, escalation, records, daily check.

The modules here are pure: they take times and data and return decisions; the receiver's
store, scheduler and HTTP API do the I/O around them.
"""
