"""Control's global state: slug reservations, organization mappings."""
