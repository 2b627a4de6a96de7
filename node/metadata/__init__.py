"""Cluster metadata through Raft: the replicated state, the controller, topic settings, broker registration."""
