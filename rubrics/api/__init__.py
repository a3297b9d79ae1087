"""The JSON API of projects, tasks, rubrics and graders: one module per kind of object.

`common` holds what every API module shares (pagination, filters, errors).
"""
