"""The control silo: users, global organization slugs and mappings."""
