"""Moving to segcast from another NVR: `frigate` turns a Frigate config into a segcast one (``segcast import-frigate``,
`command`)."""
