"""``rsna-mammo env``: this project's version and origin, versions of everything the engine uses,
the GPU, and which loader engine ``auto`` picks here (and why)."""

from __future__ import annotations

import argparse

from .engines import engine_report


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    """Print the versions, then where the project's packages come from (one line each).

    A package that another distribution also installs, or that Python imports from a
    folder other than this project's, is named with the reason (see :mod:`decode.provenance`).
    """
    from decode.env import collect
    from decode.provenance import provenance

    info = collect()
    info.update(engine_report())
    info.update(provenance())
    if args.json:
        import json

        print(json.dumps(info, indent=2))
        return 0
    packages = info.pop("packages")
    for k, v in info.items():
        print(f"{k:24s} {v if v is not None else 'none'}")
    for name, state in packages.items():
        print(f"{'package ' + name:24s} {state}")
    return 0
