"""vecx: build and query compressed embedding indexes, one reproducible file-to-file step at a time.

The library API lives in :mod:`vecx.api`; the command line in :mod:`vecx.cli`.
Importing this package is cheap on purpose: heavy modules (numpy, pyarrow) load
only when a function that needs them runs.
"""

__version__ = "0.1.0"

#: Version of the vector-table metadata this vecx writes and the newest it reads.
FORMAT_VERSION = 1
