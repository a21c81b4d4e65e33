import sys

from stress.harness import main

sys.exit(main())
