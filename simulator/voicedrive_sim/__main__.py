"""``python -m voicedrive_sim``."""

import sys

from voicedrive_sim.main import main

sys.exit(main())
