"""RPC plumbing both silos use: signing, servers, peer clients, the error table of the wire."""
