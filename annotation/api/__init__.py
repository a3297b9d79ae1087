"""The JSON API of responses, queues, verdicts, agreement, gold and calibration: one module
per kind of object."""
