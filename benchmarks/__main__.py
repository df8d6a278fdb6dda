"""Run every benchmark (`benchmarks/bench_*.py`, each with a `main()`), or the ones named.

Usage: python -m benchmarks [NAME ...]   e.g. python -m benchmarks prepare dtw
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import benchmarks


def main(names: list[str]) -> int:
    found = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    selected = names or found
    unknown = sorted(set(selected) - set(found))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(found)}", file=sys.stderr)
        return 2
    for name in selected:
        print(f"== bench {name}", flush=True)
        importlib.import_module(f"benchmarks.bench_{name}").main()
    return 0


raise SystemExit(main(sys.argv[1:]))
