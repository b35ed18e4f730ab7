"""Rules, alerts, dashboards and the README alert table generated from one thresholds file."""
