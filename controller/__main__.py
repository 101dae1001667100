"""`python -m controller` is the same program as the `keyrotor` console script."""

from controller.cli import console_main

raise SystemExit(console_main())
