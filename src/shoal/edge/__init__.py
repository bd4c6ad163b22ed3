"""Edge nodes: sensors → journal → observations → sync to the hub (docs/edge.md)."""
