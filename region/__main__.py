"""``python -m region ...`` is ``siloport region ...``."""

from shared.cli import run_module

if __name__ == "__main__":
    run_module("region")
