"""The JSON API of judges, runs, the reward endpoint, scores, leaderboards and suites: one
module per kind of object. Dataset snapshots keep theirs in grading/datasets/api.py."""
