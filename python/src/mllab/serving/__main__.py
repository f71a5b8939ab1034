import sys

from mllab.serving.server import main

sys.exit(main())
