"""``python -m control ...`` is ``siloport control ...``."""

from shared.cli import run_module

if __name__ == "__main__":
    run_module("control")
