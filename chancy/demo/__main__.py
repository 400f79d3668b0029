"""``python -m chancy.demo``."""

import sys

from chancy.demo.tour import main

sys.exit(main())
