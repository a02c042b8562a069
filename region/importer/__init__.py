"""The import engine: read an export, route each model's batches to the silo that owns it."""
