"""keyrotor's inventory benchmark (issue 13): AWS calls, wall time and memory against N users.

Run with `make bench` (or `python -m bench --help`); it is not part of `make test`. See
bench/README.md for what it measures and the last figures it produced.
"""
