"""Consumer groups: membership, assignment, and committed offsets on ``__consumer_offsets``."""
