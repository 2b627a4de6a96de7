"""The node's HTTP port (client port + 200): Prometheus metrics, health and readiness probes, the web console."""
