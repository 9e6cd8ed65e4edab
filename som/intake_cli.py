"""``som intake normalize`` and ``som intake batch``: channel payloads and partner batch files."""
