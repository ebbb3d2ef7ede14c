"""``rsna-mammo prepare``, the decode-once cache builder: an HTJ2K transcode or a preprocessed-tensor cache.

Two formats (see the README):

* ``htj2k``: every image's pixels losslessly re-encoded as High-Throughput JPEG 2000
  (:mod:`decode.transcode`), same ``{split}_images/<patient_id>/<image_id>.dcm`` layout,
  every other DICOM element kept; each file verified bit-exact before it is renamed
  into place. Any reader (and :class:`~dali_pipelines.loader.DicomLoader`) opens it.
* ``tensor``: the loader's chain (decode → VOI → MONOCHROME1 → breast box → crop →
  flip → resize/pad to ``size``) run once, stored as uint16 in memory-mappable shards
  with ``tensor_index.json`` (:mod:`dali_pipelines.tensor_cache`); the loader reads it
  when given ``data_root=CACHE``.

Atomic and resumable: outputs go to temporary names and are renamed; a row is recorded
in the journal (:mod:`training.prepare.state`) only after its output is in place, so a
kill -9 at any moment loses at most the rows in flight, and a re-run skips rows that
are complete and verified and redoes the rest. Every manifest row ends as done or as a
row of ``errors.csv``. ``--shard i/n`` (or torchrun's ``RANK``/``WORLD_SIZE``) takes
rows ``i, i+n, i+2n, ...``: no overlap, no gap; every shard ends with a check of the
whole cache that lists anything missing.

Modules: :mod:`.config` (the options), :mod:`.run` (the run), :mod:`.tasks` (per-row work in
workers, the output sink), :mod:`.state` (journal, index, checks), :mod:`.cli` (the command).
"""

from .config import PrepareConfig, Row, parse_shard
from .run import PrepareReport, check_only, copy_csvs, finish, manifest_rows, run_prepare

__all__ = [
    "PrepareConfig",
    "PrepareReport",
    "Row",
    "check_only",
    "copy_csvs",
    "finish",
    "manifest_rows",
    "parse_shard",
    "run_prepare",
]
