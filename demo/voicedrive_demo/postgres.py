"""The demo's throwaway PostgreSQL, tied to the launcher's life.

``ThrowawayPostgres`` starts the server as a plain child; when the launcher is killed outright
(SIGKILL, OOM) nothing would stop it. Here every PostgreSQL process the cluster starts asks the
kernel for SIGQUIT (PostgreSQL's immediate shutdown) when its parent dies.
"""

import signal
from typing import Any

from voicedrive_common.throwaway_pg import ThrowawayPostgres
from voicedrive_demo.supervisor import die_with_parent


class DemoPostgres(ThrowawayPostgres):
    """A ThrowawayPostgres whose server does not outlive the demo."""

    def _popen_user(self) -> dict[str, Any]:
        options = super()._popen_user()
        preexec = die_with_parent(signal.SIGQUIT)
        if preexec is not None:
            options["preexec_fn"] = preexec
        return options
