import sys

from dlkit.cli import main

sys.exit(main())
