"""Reading a run's results: the per-model scores and leaderboards (leaderboard), two runs
compared (comparison), and the figures of completed runs kept for their next reader (kept)."""
