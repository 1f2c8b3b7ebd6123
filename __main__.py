"""`python -m vecx` runs the command line."""

from vecx.cli.main import main

if __name__ == "__main__":
    main()
