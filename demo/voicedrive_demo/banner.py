"""What the demo prints once everything is ready: where to look and what to try."""

import shlex

from voicedrive_demo.ports import Ports
from voicedrive_demo.stack import Layout


def banner(*, ports: Ports, layout: Layout, with_exporter: bool, with_alerting: bool) -> str:
    """The URLs of the running stack and a few ``curl`` commands, fault injection included."""
    token = f'"Authorization: Bearer $(cat {shlex.quote(str(layout.token_file))})"'
    admin = ports.url("sim-admin", "/admin/faults")
    lines = [
        "VoiceDrive demo is running on loopback. Stop it with Ctrl-C (or SIGTERM).",
        "",
        f"  simulator API        {ports.url('sim-api', '/health')}",
        f"                       {ports.url('sim-api', '/api/status')}",
        f"  simulator admin API  {admin}  (bearer token in {layout.token_file})",
        f"  database (proxy)     postgresql://{ports.address('db-proxy')}/voicedrive",
        f"  PostgreSQL (direct)  postgresql://{ports.address('postgres')}/voicedrive",
    ]
    if with_exporter:
        lines.append(f"  exporter             {ports.url('exporter', '/metrics')}")
    if with_alerting:
        lines += [
            # Debian's packages: Prometheus has only its classic pages, Alertmanager no web UI.
            f"  Prometheus           {ports.url('prometheus', '/classic/alerts')}",
            f"  Alertmanager         {ports.url('alertmanager')}  (amtool, below)",
            f"  receiver             {ports.url('receiver', '/api/incidents')}",
            f"  mail catcher         smtp://{ports.address('smtp')}  (mails in {layout.mail}/)",
            f"  pages (file outbox)  {layout.outbox}",
        ]
    lines += [f"  logs                 {layout.logs}/", "", "Try:"]
    if with_exporter:
        lines.append(f"  curl -s {ports.url('exporter', '/metrics')} | grep '^voicedrive_'")
    lines += [
        f"  curl -s {ports.url('sim-api', '/api/status')}",
        "  # slow API (800 ms on every endpoint):",
        f'  curl -s -X PUT -H {token} -d \'{{"endpoint": "*", "latency_seconds": 0.8}}\' '
        f"{admin}/api",
        "  # the database goes down (live connections cut, new ones refused):",
        f"  curl -s -X PUT -H {token} -d '{{\"down\": true}}' {admin}/db",
        "  # half of the notifications fail:",
        f"  curl -s -X PUT -H {token} -d '{{\"failure_ratio\": 0.5}}' {admin}/notifications",
        "  # lift every fault:",
        f"  curl -s -X DELETE -H {token} {admin}",
    ]
    if with_alerting:
        receiver_token = (
            f'"Authorization: Bearer $(cat {shlex.quote(str(layout.receiver_token_file))})"'
        )
        lines += [
            "  # firing alerts, Alertmanager's view of them, and the receiver's incidents:",
            f"  curl -s {ports.url('prometheus', '/api/v1/alerts')}",
            f"  amtool alert query --alertmanager.url={ports.url('alertmanager')}",
            f"  curl -s -H {receiver_token} {ports.url('receiver', '/api/incidents')}",
        ]
    lines.append("")
    return "\n".join(lines)
