"""``som billing`` and ``som revenue``: invoice previews and revenue schedules."""
