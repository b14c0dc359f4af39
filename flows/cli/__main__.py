"""`python -m flows.cli …`, as the stack starts its workers."""

from flows.cli.main import main

main()
