"""`keyrotor demo`: the rotation lifecycle on an embedded AWS and Git, with no account.

`run_demo` is the entry point; `controller.commands.demo` wires it to the CLI.
"""

from __future__ import annotations

from controller.demo.runner import DemoResult, run_demo
from controller.demo.scenario import SCENARIOS

__all__ = ["SCENARIOS", "DemoResult", "run_demo"]
