import sys

from nfrecon.cli import main

sys.exit(main())
