"""Compare two folders of golden texts dumped by the golden tests (HATSWAP_GOLDEN_DUMP=DIR ./run_tests.sh ...):
for every file in both, whether it is byte-identical, else the largest relative difference of its numbers.

    python scripts/golden_compare.py DIR_A DIR_B            # a table, then the largest difference overall
    python scripts/golden_compare.py DIR_A DIR_B --exact    # exit 1 unless every file is byte-identical

Used by scripts/golden_bitexact.sh (a refactor must reproduce every number to the last digit on one machine) and
scripts/golden_spread.sh (how far the numbers move between CPU kernels: the tolerance's lower bound)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.golden_files import largest_difference  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--exact", action="store_true", help="fail unless every file is byte-identical")
    parser.add_argument("--quiet", action="store_true", help="only the summary line")
    args = parser.parse_args()
    names_a = {p.relative_to(args.a) for p in args.a.rglob("*") if p.is_file()}
    names_b = {p.relative_to(args.b) for p in args.b.rglob("*") if p.is_file()}
    only = sorted(names_a ^ names_b)
    worst, worst_name, identical, differing = 0.0, "", 0, []
    for name in sorted(names_a & names_b):
        a, b = (args.a / name).read_text(), (args.b / name).read_text()
        if a == b:
            identical += 1
            continue
        found = largest_difference(a, b)
        if found is None:
            differing.append(f"{name}: differs beyond its numbers")
            worst, worst_name = float("inf"), str(name)
            continue
        differing.append(f"{name}: largest relative difference {found[0]:.3g}")
        if found[0] >= worst and worst != float("inf"):
            worst, worst_name = found[0], str(name)
    if not args.quiet:
        for line in differing:
            print(line)
        for name in only:
            print(f"{name}: only in {'the first' if name in names_a else 'the second'} folder")
    print(f"{identical} identical, {len(differing)} differing, {len(only)} in one folder only; largest relative "
          f"difference {worst:.3g}" + (f" ({worst_name})" if worst_name else ""))
    return 1 if args.exact and (differing or only) else 0


if __name__ == "__main__":
    sys.exit(main())
