"""The service layer: ports and the engine that applies events in one unit of work."""
