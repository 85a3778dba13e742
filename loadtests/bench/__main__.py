import sys

from loadtests.bench import main

sys.exit(main())
