import sys

from bench.turn.run import main

sys.exit(main())
