"""Database helpers both silos use: engines, naming conventions, migrations."""
