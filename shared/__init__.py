"""Code both silos use: configuration parsing, the wire contract, RPC plumbing, database helpers."""
