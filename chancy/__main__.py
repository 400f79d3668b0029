"""``python -m chancy``: the ``chancy`` command line."""

from chancy.cli import main

if __name__ == "__main__":
    main(prog_name="chancy")
