"""Where records come from: table scans, files, streams. Each splits into resumable units."""
