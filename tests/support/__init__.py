"""Test helpers: the network guard, Git remotes, the rotation world and the GitHub stand-in.

Tests import these directly; `tests/conftest.py` only turns them into fixtures.
"""
