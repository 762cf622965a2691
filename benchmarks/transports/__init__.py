"""HTTP transports measured as candidates for agentrt's default."""
