"""``python -m nbhooks``: the ``nbhooks`` command (see :mod:`nbhooks.cli`)."""

from nbhooks.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
