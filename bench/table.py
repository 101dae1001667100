"""The benchmark's table (Markdown, also printed) and its check against issue 13's targets."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from bench import scenarios as names
from bench.measure import Measurement

BEGIN, END = "<!-- BEGIN bench-results -->", "<!-- END bench-results -->"


def _by(results: Sequence[Measurement], n: int, scenario: str) -> Measurement | None:
    return next((m for m in results if m.n == n and m.scenario == scenario), None)


def _ratio(m: Measurement, baseline: Measurement | None) -> str:
    """keyrotor's wall time over the baseline's, and what that means."""
    if baseline is None or m is baseline or m.wall <= 0 or baseline.wall <= 0:
        return ""
    ratio = m.wall / baseline.wall
    if ratio < 1:
        return f"{ratio:.3f} ({1 / ratio:.0f}x faster)"
    return f"{ratio:.2f} ({ratio:.1f}x slower)"


def _actions(m: Measurement) -> str:
    return ", ".join(
        f"{name.split(' ', 1)[1]} {count}"
        for name, count in sorted(m.calls.items(), key=lambda item: (-item[1], item[0]))
    )


def render(results: Sequence[Measurement], *, command: str, machine: str, entry: str) -> str:
    lines = [
        f"Command: `{command}` ({machine}).",
        f"keyrotor's entry points: `{entry}`.",
        "",
        "| N (A + B users) | run | AWS calls | IAM calls A / B | wall s | keyrotor / baseline "
        "| keyrotor peak RSS MB | server peak RSS MB |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for m in results:
        baseline = _by(results, m.n, names.BASELINE)
        lines.append(
            f"| {m.n} ({m.users}) | {m.scenario} | {m.total} "
            f"| {m.calls_by_account['A']} / {m.calls_by_account['B']} | {m.wall:.2f} "
            f"| {_ratio(m, baseline)} | {m.rss_mb:.0f} | {m.server_rss_mb:.0f} |"
        )
    lines += ["", "AWS calls by action:", ""]
    for m in results:
        extra = ""
        if "calls_per_rotated_user" in m.extra:
            extra = (
                f" — {m.extra['rotated']:.0f} rotated, "
                f"{m.extra['calls_per_rotated_user']:.1f} calls per rotated user beyond the "
                "no-op apply"
            )
        lines.append(f"- N={m.n}, {m.scenario} ({m.note}): {_actions(m)}{extra}")
    return "\n".join(lines) + "\n"


def verdicts(results: Sequence[Measurement]) -> list[str]:
    """Issue 13's targets, each as `PASS`/`FAIL` with the figure it was judged on."""
    out = []
    for n in sorted({m.n for m in results}):
        warm = _by(results, n, names.NEW_WARM)
        cold = _by(results, n, names.NEW_COLD)
        baseline = _by(results, n, names.BASELINE)
        others = (
            _by(results, n, s)
            for s in (
                names.REPORT_ONLY_COLD,
                names.REPORT_ONLY_WARM,
                names.TODAY_PLAN,
                names.TODAY_APPLY,
            )
        )
        for m in (cold, warm, *others):
            if m is None:
                continue
            for label, users in (("A", n), ("B", m.users - n)):
                count = m.calls_by_account[label]
                limit = 3 + math.ceil(users / 1000)
                out.append(
                    _verdict(
                        count <= limit,
                        f"N={n} {m.scenario}: {count} IAM calls in account {label} "
                        f"(limit 3 + ceil({users}/1000) = {limit})",
                    )
                )
        wanted = {5000: 20.0, 10000: 50.0}.get(n)
        # The target is the no-op plan's (and apply's); the reader alone is shown beside it.
        for scenario in (names.TODAY_PLAN, names.TODAY_APPLY, names.NEW_COLD, names.NEW_WARM):
            m = _by(results, n, scenario)
            if wanted and baseline and m:
                ratio = baseline.wall / m.wall
                out.append(
                    _verdict(
                        ratio >= wanted,
                        f"N={n} {m.scenario}: {ratio:.1f}x faster than the baseline "
                        f"(target {wanted:.0f}x)",
                    )
                )
        if n >= 10000:
            for m in results:
                if m.n == n and m.scenario != names.BASELINE:
                    out.append(
                        _verdict(
                            m.rss_mb < 200,
                            f"N={n} {m.scenario}: peak RSS {m.rss_mb:.0f} MB (target < 200)",
                        )
                    )
        rotate = _by(results, n, names.TODAY_ROTATE)
        if rotate and "calls_per_rotated_user" in rotate.extra:
            per = rotate.extra["calls_per_rotated_user"]
            out.append(
                _verdict(
                    per <= 8,
                    f"N={n} a rotation step: {per:.1f} calls per rotated user beyond the "
                    "inventory (target <= 8)",
                )
            )
    return out


def _verdict(ok: bool, text: str) -> str:
    return f"{'PASS' if ok else 'FAIL'}  {text}"


def write_readme(path: Path, text: str, verdicts: Sequence[str]) -> None:
    block = f"{BEGIN}\n{text}\nAgainst issue 13's targets:\n\n" + "".join(
        f"    {v}\n" for v in verdicts
    )
    block += f"{END}"
    current = path.read_text() if path.exists() else f"# Benchmark\n\n{BEGIN}\n{END}\n"
    if BEGIN not in current:
        current += f"\n{BEGIN}\n{END}\n"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    path.write_text(pattern.sub(lambda _: block, current))
