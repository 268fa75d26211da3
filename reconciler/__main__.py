"""`python -m reconciler` runs the same CLI as the `reconciler` console script."""

from reconciler import cli

cli.main()
