"""``python -m edgebp`` (and ``torchrun -m edgebp``) runs the CLI."""

from edgebp.cli import main

if __name__ == "__main__":
    main()
