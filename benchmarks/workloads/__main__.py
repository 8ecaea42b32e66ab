"""``python benchmarks/workloads {export,reference} ...``: write a workload's data once, or print
its float64 reference checksums."""

import argparse
import json
import os
import sys

if __package__ in (None, ""):  # run as a folder: make `workloads` importable by name
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from workloads import SCALES, WORKLOADS, get_spec, get_workload, load_data, save_data  # noqa: E402


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Write a workload's data once (export), or print its float64 reference "
        "checksums (reference)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="write the arrays to a new directory")
    reference = sub.add_parser("reference", help="print the float64 NumPy reference checksums")
    for p in (export, reference):
        p.add_argument("workload", choices=list(WORKLOADS))
        p.add_argument("--scale", choices=SCALES, default="full")
    export.add_argument("path", help="a directory that does not exist yet")
    reference.add_argument("--data", help="a directory written by export (default: draw)")
    args = parser.parse_args(argv)
    if args.command == "export":
        spec = get_spec(args.workload, args.scale)
        print(save_data(get_workload(args.workload).draw(spec), args.path))
        return 0
    workload = get_workload(args.workload)
    if workload.reference is None:
        print(f"{args.workload} has no float64 reference (its variants must agree bit for bit)")
        return 1
    data = load_data(args.workload, args.scale, args.data)
    print(json.dumps(workload.reference(get_spec(args.workload, args.scale), data)))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
