"""``python -m voicedrive_demo``."""

import sys

from voicedrive_demo.main import main

sys.exit(main())
