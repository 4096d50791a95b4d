"""Where a numpy-target program's time goes: wall time per line of its generated ``run_batch``.

Each kernel call in the generated module is one line under a comment naming
its node and formulation; a profile hook times every call made from that
function's frame and charges it to the node (layout conversions are charged
to the line that makes them).
"""
from __future__ import annotations

import re
import statistics
import sys
import time
from collections import defaultdict

COMMENT = re.compile(r"^    # (\S+) (\S+): .*?(?: - (.*))?$")


def line_owners(source: str) -> dict[int, str]:
    """Source line number -> 'Op node (formulation)' for every line of the network body."""
    owners: dict[int, str] = {}
    current = ""
    for number, line in enumerate(source.splitlines(), start=1):
        m = COMMENT.match(line)
        if m:
            op, name, note = m.groups()
            current = f"{op} {name}" + (f" ({note})" if note else "")
            continue
        stripped = line.strip()
        if stripped.startswith("v_") and "= to_" in stripped:
            owners[number] = "layout conversion " + stripped.split("= ")[1].split("(")[0]
        elif current:
            owners[number] = current
    return owners


def profile_program(prog, x, repeats: int = 5) -> list[tuple[str, float]]:
    """(node, median seconds per run) for every node of ``prog`` on input x, largest first."""
    code = prog._fn.__globals__["run_batch"].__code__ if "run_batch" in prog._fn.__globals__ else prog._fn.__code__
    owners = line_owners(prog.source)
    runs: list[dict[str, float]] = []
    for _ in range(repeats):
        totals: dict[str, float] = defaultdict(float)
        starts: dict[int, tuple[str, float]] = {}

        def hook(frame, event, arg):
            caller = frame.f_back
            if caller is None or caller.f_code is not code:
                return
            if event in ("call", "c_call"):
                starts[id(frame) if event == "call" else -caller.f_lineno] = (
                    owners.get(caller.f_lineno, "other"), time.perf_counter())
            elif event in ("return", "c_return", "c_exception"):
                key = id(frame) if event == "return" else -caller.f_lineno
                if key in starts:
                    owner, t0 = starts.pop(key)
                    totals[owner] += time.perf_counter() - t0

        # one thread: the profile hook sees the calling thread only
        sys.setprofile(hook)
        try:
            prog.run(x) if "run_batch" not in prog._fn.__globals__ else prog._fn.__globals__["run"](
                prog._weights, x, threads=1)
        finally:
            sys.setprofile(None)
        runs.append(totals)
    keys = {k for r in runs for k in r}
    med = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in keys}
    return sorted(med.items(), key=lambda kv: -kv[1])
