"""The data plane of replicated partitions: leaders, followers, the ISR and the high watermark."""
