"""`python -m cecilia.dev run | exec -- CMD...` (see cecilia.dev.runner)."""

import sys

from cecilia.dev.runner import main

sys.exit(main())
