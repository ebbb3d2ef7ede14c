"""The one home of the project's version.

``setup.py`` reads it (without importing the package), and ``rsna-mammo --version``,
``rsna-mammo env``, the benchmark machine record and training checkpoints import it.
"""

__version__ = "0.1.0"

#: The distribution that owns the top-level packages ``decode``, ``dali_pipelines``,
#: ``training`` and ``benchmarks``.
DISTRIBUTION = "rsna-mammo"
