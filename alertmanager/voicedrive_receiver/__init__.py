"""Alertmanager webhook receiver: levels, fan-out to Slack/email/SMS/phone, incidents."""
