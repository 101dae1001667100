"""`python -m controller` is the same program as the `keyrotor` console script."""

from controller.cli import main

raise SystemExit(main())
