"""Relocation logic both silos share, free of databases and RPC: the model registry, scopes, the
export reader, value conversion, primary-key maps and findings."""
