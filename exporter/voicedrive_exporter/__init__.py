"""VoiceDrive exporter: probes the API, notifications, database, backups and host; serves /metrics."""
