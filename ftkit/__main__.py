"""`python -m ftkit ...`, so that `accelerate launch -m ftkit sft RECIPE` works."""

import sys

from ftkit.cli import main

sys.exit(main())
