"""`python -m hwnas.cli ...` (and `torchrun -m hwnas.cli ...`): the same app as the `hwnas` script."""

from hwnas.cli import main

main()
