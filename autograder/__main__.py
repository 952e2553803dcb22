"""``python -m autograder``: see :mod:`autograder.cli`."""

from autograder.cli import main

if __name__ == "__main__":  # not when a Dask worker process (spawned) imports it as __mp_main__
    raise SystemExit(main())
