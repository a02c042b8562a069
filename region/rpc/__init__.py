"""The region's gRPC side: its servicer and its client for control."""
