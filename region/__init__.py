"""The region silo: organizations and what hangs off them; the import engine runs here."""
