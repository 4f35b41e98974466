import sys

from bench.reminders.run import main

sys.exit(main())
