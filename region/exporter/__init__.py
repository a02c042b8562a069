"""The export engine: read both silos' models in dependency order and stream them as one export."""
