import sys

from tai_autonomics.cli import main

sys.exit(main())
