"""`python -m connector_cli` runs the `flyte-connector` command."""

from connector_cli.cli import main

if __name__ == "__main__":
    main()
