"""The schema registry: versioned JSON Schemas per subject in the Raft metadata, compatibility checks, and per-topic enforcement."""
