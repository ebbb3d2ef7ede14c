"""Which distribution and which folder the project's top-level packages come from.

The packages have generic names (``decode``, ``dali_pipelines``, ``training``,
``benchmarks``). Installed into an environment shared with another project that ships a
package of the same name, pip writes both into one ``site-packages/<name>/`` folder and
the files of one overwrite the other's. :func:`package_origins` says, per package, which
distributions claim it (``importlib.metadata.packages_distributions``) and where Python
imports it from, so ``rsna-mammo env`` can name a collision. Nothing here imports the
packages it checks (``importlib.util.find_spec`` only locates them).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from importlib import metadata, util
from urllib.parse import unquote, urlparse

from ._version import DISTRIBUTION

log = logging.getLogger(__name__)

#: The top-level import names this distribution installs (``packages`` in setup.py).
TOP_LEVEL = ("decode", "dali_pipelines", "training", "benchmarks")


@dataclass(frozen=True)
class PackageOrigin:
    """Where one top-level package comes from.

    Attributes:
        name: the import name.
        distributions: every installed distribution that claims it, sorted (empty when
            none does, e.g. a source tree on ``PYTHONPATH`` without ``pip install``).
        path: the folder Python imports it from (None when it cannot be found).
        problem: why this is not this project's package, or None when it is.
    """

    name: str
    distributions: tuple[str, ...]
    path: str | None
    problem: str | None


def source_root() -> str:
    """The folder holding this ``decode`` package (the project root of a checkout)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def installed_root() -> str | None:
    """Where the installed ``rsna-mammo`` distribution's packages live.

    Returns:
        The source folder of an editable install, the ``site-packages`` folder of a
        regular one, or None when the distribution is not installed.
    """
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    direct = dist.read_text("direct_url.json")
    if direct:
        try:
            info = json.loads(direct)
        except ValueError:
            info = {}
        url = urlparse(str(info.get("url", "")))
        if info.get("dir_info", {}).get("editable") and url.scheme == "file":
            return os.path.abspath(unquote(url.path))
    for f in dist.files or ():
        if str(f).replace("\\", "/") == "decode/__init__.py":
            return os.path.dirname(os.path.dirname(os.path.abspath(str(dist.locate_file(f)))))
    return None


def _same(a: str, b: str) -> bool:
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def package_origins() -> list[PackageOrigin]:
    """One :class:`PackageOrigin` per name in :data:`TOP_LEVEL`.

    A package has a problem when no installed distribution claims it, when another
    distribution claims it too (its files may have overwritten ours), or when Python
    imports it from a folder other than the one this ``decode`` package sits in.
    """
    owners = metadata.packages_distributions()
    root = source_root()
    out = []
    for name in TOP_LEVEL:
        dists = tuple(sorted(set(owners.get(name, ()))))
        spec = util.find_spec(name)
        path = os.path.dirname(spec.origin) if spec is not None and spec.origin else None
        others = [d for d in dists if d != DISTRIBUTION]
        if path is None:
            problem = f"{name} cannot be imported"
        elif not _same(os.path.dirname(path), root):
            problem = f"{name} is imported from {path}, not from this project's folder {root}"
        elif others:
            problem = f"{name} is also installed by {', '.join(others)}: install {DISTRIBUTION} into its own venv"
        elif not dists:
            problem = f"no installed distribution provides {name} (run `pip install -e .` in the project's venv)"
        else:
            problem = None
        out.append(PackageOrigin(name, dists, path, problem))
    return out


def provenance() -> dict[str, object]:
    """JSON-ready summary for ``rsna-mammo env``.

    Returns:
        ``{"source": folder the packages import from, "installed": installed_root() or
        None, "packages": {name: "ok" or the problem}}``.
    """
    return {
        "source": source_root(),
        "installed": installed_root(),
        "packages": {o.name: o.problem or "ok" for o in package_origins()},
    }
