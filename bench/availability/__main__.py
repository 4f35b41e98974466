import sys

from bench.availability.run import main

sys.exit(main())
