"""The benchmark result format: ``{"machine", "config", "results"}`` with :class:`BenchResult` rows.

Shared by the ``rsna-mammo bench`` subcommands and ``benchmarks/gpu_check.sh`` (``bench caches``
adds ``seconds_per_image`` and ``repeats`` to its rows, and ``bench reliability`` writes counts
without rows: ``bench report`` reads neither). A document is plain JSON::

    {"machine": {cpu, cpu_count, gpu, gpu_count, driver, cuda, python, platform,
                 versions: {library: version or null}, git_commit, git_dirty, date},
     "config":  {"schema_version": 1, "command": "...", ...run options...},
     "results": [BenchResult row, ...],
     "summary": {...}}            # optional: derived figures (ratios), never needed to read rows

Row fields (exactly these, in this order):

============== ==========================================================================
stage          what was timed: ``baseline`` (a plain library loop: pydicom, dicomsdl),
               ``decode`` (the project's decode path), loader stages ``read``, ``voi``,
               ``crop``, ``resize``, ``h2d``, ``collate``, ``loader`` (end to end),
               ``train``, ``infer``, ``e2e`` (``predict``: files in, submission out)
backend        decode backend name, ``auto``, or for model rows the data source
               (``memory`` / ``loader``); ``NAME@SCALE`` (``openjpeg@1/2``, ``auto@auto``)
               marks a decode-scale row (JPEG 2000 decoded below full resolution;
               height × width stay the frame's for decode rows)
device         ``cpu`` or ``cuda``
transfer_syntax UID of the files decoded (null when mixed or not applicable)
height, width  image size in pixels (most common size when files differ; null if n/a)
images         images per timed repeat
images_per_s   median over the timed repeats (null when not measured, e.g. inexact)
mpix_per_s     median megapixels (10^6 pixels) per second over the repeats
spread         (max − min) / median of images/s over the repeats (0 for one repeat)
workers        processes decoding (1: serial in the measuring process)
batch_size     images per batch (1 for per-file decode)
peak_host_mb   peak resident memory of the process tree during the repeats, MiB
peak_gpu_mb    peak GPU memory, MiB (torch / CuPy pools; ``cudaMemGetInfo`` in the GPU
               check); null on the CPU
exact          output equals pydicom's ``pixel_array`` on every file of the first pass
               (null where no comparison applies)
============== ==========================================================================
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from decode.errors import UsageError

SCHEMA_VERSION = 1

Stage = Literal[
    "baseline", "decode", "read", "voi", "crop", "resize", "h2d", "collate", "loader", "train", "infer", "e2e"
]
STAGES = ("baseline", "decode", "read", "voi", "crop", "resize", "h2d", "collate", "loader", "train", "infer", "e2e")
ROW_DEVICES = ("cpu", "cuda")
#: The plain-library loops every decode run measures beside the project's figures.
BASELINES = ("pydicom", "dicomsdl")

#: Keys every ``machine`` record carries (values may be null).
MACHINE_KEYS = ("cpu", "cpu_count", "gpu", "driver", "cuda", "python", "versions", "git_commit")


def _num_or_none(name: str, value, *, integer: bool = False, positive: bool = False) -> None:
    if value is None:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'} or null, got {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'} and finite, got {value!r}")


@dataclass
class BenchResult:
    """One measured configuration (see the module docstring for each field's meaning).

    Raises:
        ValueError: a field is out of range; the message names the field and, for
            choices, lists the allowed values.
    """

    stage: Stage
    backend: str
    device: Literal["cpu", "cuda"]
    transfer_syntax: str | None
    height: int | None
    width: int | None
    images: int
    images_per_s: float | None
    mpix_per_s: float | None
    spread: float | None
    workers: int
    batch_size: int
    peak_host_mb: float | None
    peak_gpu_mb: float | None
    exact: bool | None

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage {self.stage!r} is not one of: {', '.join(STAGES)}")
        if self.device not in ROW_DEVICES:
            raise ValueError(f"device {self.device!r} is not one of: {', '.join(ROW_DEVICES)}")
        if not isinstance(self.backend, str) or not self.backend:
            raise ValueError(f"backend must be a non-empty string, got {self.backend!r}")
        if self.transfer_syntax is not None and not isinstance(self.transfer_syntax, str):
            raise ValueError(f"transfer_syntax must be a UID string or null, got {self.transfer_syntax!r}")
        for name in ("height", "width"):
            _num_or_none(name, getattr(self, name), integer=True, positive=True)
        _num_or_none("images", self.images, integer=True)
        for name in ("workers", "batch_size"):
            _num_or_none(name, getattr(self, name), integer=True, positive=True)
            if getattr(self, name) is None:
                raise ValueError(f"{name} must be an integer >= 1")
        for name in ("images_per_s", "mpix_per_s", "spread", "peak_host_mb", "peak_gpu_mb"):
            _num_or_none(name, getattr(self, name))
        if self.exact is not None and not isinstance(self.exact, bool):
            raise ValueError(f"exact must be true, false or null, got {self.exact!r}")
        if self.exact is False and self.images_per_s is not None:
            raise ValueError("a row with exact=false carries no speed (images_per_s must be null)")

    @property
    def is_baseline(self) -> bool:
        return self.stage == "baseline"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> BenchResult:
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in row]
        extra = [k for k in row if k not in names]
        if missing or extra:
            raise ValueError(
                f"result row fields differ from the schema: missing {missing or 'none'}, unexpected {extra or 'none'}"
            )
        return cls(**{n: row[n] for n in names})


ROW_FIELDS = tuple(f.name for f in dataclasses.fields(BenchResult))


def options_of(args) -> dict[str, Any]:
    """The parsed options of a run (an ``argparse.Namespace``), JSON-ready, for ``config.options``."""
    return {
        k: v
        for k, v in sorted(vars(args).items())
        if isinstance(v, (str, int, float, bool, type(None))) and k not in ("verbose", "command")
    }


def make_document(
    machine: dict[str, Any], config: dict[str, Any], results: list[BenchResult], summary: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Assemble (and validate) a result document."""
    doc = {
        "machine": machine,
        "config": {"schema_version": SCHEMA_VERSION, **config},
        "results": [r.to_dict() for r in results],
    }
    if summary is not None:
        doc["summary"] = summary
    validate(doc)
    return doc


def validate(doc: Any) -> list[BenchResult]:
    """Check a result document and return its rows.

    Raises:
        ValueError: the first problem found, naming the key or row.
    """
    if not isinstance(doc, dict):
        raise ValueError("a result document is a JSON object with machine, config and results")
    missing = [k for k in ("machine", "config", "results") if k not in doc]
    if missing:
        raise ValueError(f"result document lacks {', '.join(missing)}")
    extra = [k for k in doc if k not in ("machine", "config", "results", "summary")]
    if extra:
        raise ValueError(f"unexpected top-level key(s) {extra}; allowed: machine, config, results, summary")
    machine = doc["machine"]
    if not isinstance(machine, dict):
        raise ValueError("machine must be an object")
    lacking = [k for k in MACHINE_KEYS if k not in machine]
    if lacking:
        raise ValueError(f"machine record lacks {', '.join(lacking)}")
    if not isinstance(machine["versions"], dict):
        raise ValueError("machine.versions must be an object of library → version")
    config = doc["config"]
    if not isinstance(config, dict) or not isinstance(config.get("command"), str):
        raise ValueError("config must be an object with a 'command' string")
    if config.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"config.schema_version is {config.get('schema_version')!r}; this code reads {SCHEMA_VERSION}")
    if not isinstance(doc["results"], list):
        raise ValueError("results must be a list of rows")
    rows = []
    for i, row in enumerate(doc["results"]):
        if not isinstance(row, dict):
            raise ValueError(f"results[{i}] is not an object")
        try:
            rows.append(BenchResult.from_dict(row))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"results[{i}]: {exc}") from None
    if "summary" in doc and not isinstance(doc["summary"], dict):
        raise ValueError("summary must be an object")
    return rows


def load(path: str) -> dict[str, Any]:
    """Read and validate a result file.

    Raises:
        UsageError: not JSON, or not a valid document (the message names the file).
    """
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        validate(doc)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not JSON: {exc}") from None
    except ValueError as exc:
        raise UsageError(f"{path}: {exc}") from None
    return doc


def dump(doc: dict[str, Any], path: str) -> str:
    """Validate and write ``doc`` atomically as indented JSON; returns ``path``."""
    from decode.atomic import atomic_write

    validate(doc)
    return atomic_write(path, json.dumps(doc, indent=2, sort_keys=False) + "\n")
