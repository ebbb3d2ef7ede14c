"""``rsna-mammo synth``: write a synthetic RSNA-layout dataset."""

from __future__ import annotations

import argparse
import json

from .errors import UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--patients", type=int, default=20, help="training patients (4 images each; default 20)")
    p.add_argument("--test-patients", type=int, default=None, help="test patients (default: patients/5)")
    p.add_argument("--height", type=int, default=416, help="image rows (full size: 3328)")
    p.add_argument("--width", type=int, default=320, help="image columns (full size: 2560)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cancer-rate", type=float, default=0.25, help="fraction of breasts with a lesion")
    p.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")


def run(args: argparse.Namespace) -> int:
    from .parallel import default_workers
    from .testing.synth import make_dataset

    if args.patients < 1 or args.height < 16 or args.width < 16:
        raise UsageError("need --patients >= 1 and --height/--width >= 16")
    counts = make_dataset(
        args.out,
        patients=args.patients,
        test_patients=args.test_patients,
        height=args.height,
        width=args.width,
        seed=args.seed,
        cancer_rate=args.cancer_rate,
        workers=args.workers or default_workers(),
    )
    print(json.dumps({"out": args.out, **counts}))
    return 0
