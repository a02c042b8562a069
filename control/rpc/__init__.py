"""Control's gRPC side: its servicer and its clients for the regions."""
