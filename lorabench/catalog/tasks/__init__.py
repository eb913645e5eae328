"""One declaration module per task module: its params classes and `TASKS` (TaskInfos)."""
