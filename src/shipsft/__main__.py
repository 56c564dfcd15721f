"""`python -m shipsft ...` (also how `torchrun -m shipsft train CONFIG` and the tcmalloc re-exec start it)."""
from shipsft.cli.main import main

main()
