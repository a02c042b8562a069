"""Generated wire contract, version 1. Do not edit: run proto/generate.py."""
