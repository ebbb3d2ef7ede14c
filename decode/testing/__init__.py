"""Test-data generators, as ``numpy.testing``: synthetic DICOMs and datasets, a malformed corpus, fuzzing.

* :mod:`decode.testing.synth` — mammogram-like images encoded with real codecs, single
  files (:func:`~decode.testing.synth.write_dicom`) and RSNA-layout datasets
  (:func:`~decode.testing.synth.make_dataset`, the ``rsna-mammo synth`` command);
* :mod:`decode.testing.corpus` — malformed inputs with the typed error each must give;
* :mod:`decode.testing.fuzz` — mutations of valid files, run per backend in contained workers.

The decode, loading, training and inference paths never import this package; the
``synth`` command, the demo, the benchmarks and the tests do.
"""
