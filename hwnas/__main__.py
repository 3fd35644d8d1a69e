"""`python -m hwnas ...` (and `torchrun ... -m hwnas search ...`): the same app as the `hwnas` script."""

from hwnas.cli import main

main()
