"""The event history: every event in a local SQLite file with its snapshot, and the API's reads of it.

`writer` owns the file and its writer thread (read its docstring first), with `retention` keeping it
within its size and age on that thread; `reader` runs the API's queries, whose pages `query` shapes;
`format` says which files are segcast's history, and of which format.
"""
