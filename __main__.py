"""`python -m vecx` runs the command line."""

from vecx.cli import run

if __name__ == "__main__":
    run()
