"""`python -m p2t_screen` runs the `p2t` command."""

from .cli import main

main()
