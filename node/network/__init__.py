"""The broker's network edge: the client port's server, request routing, and requests to other brokers."""
